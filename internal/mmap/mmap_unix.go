//go:build unix

package mmap

import (
	"errors"
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

// FloatFile is a file of float32s mapped read-only whose descriptor stays open, so floats can
// also be copied out with pread (Read).
type FloatFile struct {
	Flat []float32 // the mapping
	f    *os.File
}

// OpenFloats maps the file of float32s at path; Close unmaps it.
func OpenFloats(path string) (*FloatFile, error) {
	flat, unmap, err := Floats(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		_ = unmap()
		return nil, err
	}
	if len(flat) == 0 {
		flat = nil
	}
	return &FloatFile{Flat: flat, f: f}, nil
}

// Read returns v's floats: v itself unless it lies in the mapping, else a copy read into dst
// (at least len(v) long) with pread. Touching mapped memory brings the page cache's whole
// folio, up to megabytes, into the process (its RSS); for a few vectors at random, as a search
// rescoring its candidates reads them, pread copies the bytes and maps nothing.
func (ff *FloatFile) Read(v, dst []float32) []float32 {
	if !ff.Holds(v) {
		return v
	}
	base, p := uintptr(unsafe.Pointer(&ff.Flat[0])), uintptr(unsafe.Pointer(&v[0]))
	dst = dst[:len(v)]
	if _, err := ff.f.ReadAt(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), int64(p-base)); err != nil {
		return v // the mapping holds the same bytes
	}
	return dst
}

// Holds reports whether v lies in the mapping.
func (ff *FloatFile) Holds(v []float32) bool {
	if len(v) == 0 || len(ff.Flat) == 0 {
		return false
	}
	base, p := uintptr(unsafe.Pointer(&ff.Flat[0])), uintptr(unsafe.Pointer(&v[0]))
	return p >= base && p < base+uintptr(len(ff.Flat))*4
}

// Close unmaps the file and closes its descriptor.
func (ff *FloatFile) Close() error {
	var err error
	if len(ff.Flat) > 0 {
		err = syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&ff.Flat[0])), 4*len(ff.Flat)))
	}
	ff.Flat = nil
	return errors.Join(err, ff.f.Close())
}
