//go:build !amd64 || purego

package ann

import "unsafe"

// prefetchLines is a hint only; without the assembly there is nothing to give it.
func prefetchLines(unsafe.Pointer, int) {}

// dotInt8 is the dot product of two codes of the same length.
func dotInt8(a, b []int8) int32 { return dotInt8Go(a, b) }
