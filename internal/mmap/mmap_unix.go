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
	return mapFile(f)
}

// mapFile maps the whole of f read-only.
func mapFile(f *os.File) ([]byte, func() error, error) {
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
	Flat  []float32 // the mapping
	f     *os.File
	unmap func() error
}

// OpenFloats maps the file of float32s at path; Close unmaps it.
func OpenFloats(path string) (*FloatFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	b, unmap, err := mapFile(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	ff := &FloatFile{f: f, unmap: unmap}
	if len(b) >= 4 {
		ff.Flat = unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
	}
	return ff, nil
}

// Read returns v's floats: v itself unless it lies in the mapping, else a copy read into dst
// (at least len(v) long) with pread. Touching mapped memory brings the page cache's whole
// folio, up to megabytes, into the process (its RSS); for a few vectors at random, as a search
// rescoring its candidates reads them, pread copies the bytes and maps nothing.
func (ff *FloatFile) Read(v, dst []float32) []float32 {
	off, ok := ff.offset(v)
	if !ok {
		return v
	}
	dst = dst[:len(v)]
	if _, err := ff.f.ReadAt(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), off); err != nil {
		return v // the mapping holds the same bytes
	}
	return dst
}

// Holds reports whether v lies in the mapping.
func (ff *FloatFile) Holds(v []float32) bool {
	_, ok := ff.offset(v)
	return ok
}

// offset is v's byte offset in the file, when v lies in the mapping.
func (ff *FloatFile) offset(v []float32) (int64, bool) {
	if len(v) == 0 || len(ff.Flat) == 0 {
		return 0, false
	}
	base, p := uintptr(unsafe.Pointer(&ff.Flat[0])), uintptr(unsafe.Pointer(&v[0]))
	return int64(p - base), p >= base && p < base+uintptr(len(ff.Flat))*4
}

// Intact reports whether the file still holds every byte mapped: reading the mapping past a
// file cut short is SIGBUS.
func (ff *FloatFile) Intact() bool {
	fi, err := ff.f.Stat()
	return err == nil && fi.Size() >= int64(len(ff.Flat))*4
}

// Close unmaps the file and closes its descriptor.
func (ff *FloatFile) Close() error {
	ff.Flat = nil
	return errors.Join(ff.unmap(), ff.f.Close())
}
