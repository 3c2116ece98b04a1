//go:build !unix

package mmap

import (
	"os"
	"unsafe"
)

// Floats reads the file into memory where mapping is not available.
func Floats(path string) ([]float32, func() error, error) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 {
		return nil, func() error { return nil }, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), func() error { return nil }, nil
}

// Bytes reads the file into memory where mapping is not available.
func Bytes(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	return b, func() error { return nil }, err
}

// Release does nothing where mapping is not available.
func Release(b []byte) error { return nil }

// FloatFile holds a file of float32s read into memory where mapping is not available.
type FloatFile struct {
	Flat []float32
}

// OpenFloats reads the file of float32s at path.
func OpenFloats(path string) (*FloatFile, error) {
	flat, _, err := Floats(path)
	if err != nil {
		return nil, err
	}
	return &FloatFile{Flat: flat}, nil
}

// Read returns v: the floats are in memory already.
func (ff *FloatFile) Read(v, dst []float32) []float32 { return v }

// Intact is always true: the floats were read into memory.
func (ff *FloatFile) Intact() bool { return true }

// Holds reports false: nothing is mapped.
func (ff *FloatFile) Holds(v []float32) bool { return false }

// Close drops the floats.
func (ff *FloatFile) Close() error {
	ff.Flat = nil
	return nil
}
