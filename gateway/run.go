package gateway

import (
	"context"
	"sync"
)

// runAll runs every task until the first returns; the first error (or the
// end of ctx) cancels the rest, and runAll waits for all of them (STYLE 2).
func runAll(ctx context.Context, tasks ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t(ctx)
			once.Do(func() { first = err })
			cancel()
		}()
	}
	wg.Wait()
	return first
}
