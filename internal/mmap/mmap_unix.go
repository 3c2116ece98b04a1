//go:build unix

package mmap

import (
	"os"
	"syscall"
	"unsafe"
)

// Floats maps the file of float32s at path read-only. The returned function unmaps it; the
// slice must not be used after.
func Floats(path string) ([]float32, func() error, error) {
	b, unmap, err := Bytes(path)
	if err != nil || len(b) < 4 {
		return nil, unmap, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), unmap, nil
}

// Bytes maps the file at path read-only (page aligned). The returned function unmaps it; the
// slice must not be used after.
func Bytes(path string) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() == 0 {
		return nil, func() error { return nil }, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}

// Release tells the kernel the process does not need the pages of a mapping resident: they
// leave its RSS and come back from the page cache (or the file) when read again.
func Release(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return syscall.Madvise(b, syscall.MADV_DONTNEED)
}
