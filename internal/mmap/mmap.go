// Package mmap maps files of float32s into memory read-only, so large vector sets live in the
// page cache (read on demand, dropped under memory pressure) instead of the Go heap.
package mmap

import (
	"bufio"
	"os"
	"unsafe"
)

// WriteFloats writes vecs one after another in the machine's byte order (the file is read back
// by this machine only, with Floats).
func WriteFloats(path string, vecs [][]float32) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, v := range vecs {
		if len(v) > 0 {
			_, _ = w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v)))
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
