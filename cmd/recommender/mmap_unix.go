//go:build unix

package main

import (
	"os"
	"syscall"
	"unsafe"
)

// mapFloats memory-maps a file of float32s (little-endian, as on every platform we run on).
func mapFloats(path string) ([]float32, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), func() { _ = syscall.Munmap(b) }, nil
}
