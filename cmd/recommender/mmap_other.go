//go:build !unix

package main

// mapFloats reads the file into memory where memory mapping is not available.
func mapFloats(path string) ([]float32, func(), error) {
	f, err := readFloats(path)
	return f, func() {}, err
}
