// Package marking parses, validates and prints the markings that travel with
// every portion of a Tearline report (DESIGN §2).
//
// A marking is written in banner form:
//
//	UNCLASSIFIED
//	CONFIDENTIAL//NOFORN
//	SECRET//REL TO GBR, USA//ORCON
//	TOP SECRET//REL TO GBR, USA
//
// The first segment is the classification, one of the levels of the
// federation's [Scheme] ([Default] unless the federation sets its own). The
// other segments, separated by "//" and accepted in any order, are the
// dissemination controls:
//
//   - REL TO A, B: the parties the originator authorises, as party codes
//     ([ValidParty]) separated by commas;
//   - NOFORN: the portion never leaves the originator (it cannot be combined
//     with REL TO);
//   - ORCON: the third-party rule, only the originator decides further
//     dissemination.
//
// ORCON is literal in this package: a marking has ORCON only when its banner
// says so. DESIGN §2 says ORCON is "on by default"; that default belongs to
// whoever composes a new marking (the publishing client sets OrCon unless the
// author opts out), not to the parser, so that a banner always means exactly
// what it says and Parse(m.Banner()) gives back m.
//
// Parsing is lenient in what it accepts and strict in what it means: keywords,
// levels and party codes are matched without regard to ASCII case, runs of
// spaces and tabs are collapsed, and blanks around segments and list items
// are ignored. Anything else (an unknown level or control, an empty segment,
// a repeated control or party, a malformed party code, NOFORN with REL TO, a
// banner longer than [MaxBannerLen] bytes) is a [*ParseError] that points at
// the offending piece of the input and matches [ErrBanner] with errors.Is.
//
// [Marking.Banner] prints the canonical form: the level in upper case, then
// REL TO with its parties sorted, then NOFORN, then ORCON.
//
// Need-to-know topics are part of a marking but not of its banner: they are a
// separate field, set by callers (see [NormalizeTopics]) and included in
// [Marking.Canonical], the bytes that report digests cover.
package marking
