//go:build !amd64 || purego

package ann

// dotInt8 is the dot product of two codes of the same length.
func dotInt8(a, b []int8) int32 { return dotInt8Go(a, b) }
