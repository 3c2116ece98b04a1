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
