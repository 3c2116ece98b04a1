package lexical

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// sketchBuckets is the number of MinHash buckets in a Sketch: the Jaccard estimate's standard
// error is about sqrt(J(1-J)/128), 0.03 for the overlaps abstracts have.
const sketchBuckets = 128

// Sketch summarises a term vector in 130 bytes (one-permutation MinHash, 8 bits kept per
// bucket), so that two papers' similarity costs a comparison of 128 bytes instead of decoding
// and merging their term lists. A store can keep one per paper in memory. Each term enters as
// copies in proportion to its squared damped frequency (see copies), so that similarity
// approximates the cosine of damped term frequencies (rank.LexicalCosine).
type Sketch struct {
	buckets [sketchBuckets]uint8 // 1 + the low bits of the smallest hash in the bucket; 0: empty
	terms   uint16               // copies of terms entered, saturating
}

// Sketch returns the vector's sketch; a vector without terms gives the zero Sketch.
func (v Vector) Sketch() Sketch {
	var s Sketch
	var lowest [sketchBuckets]uint64
	for i := range lowest {
		lowest[i] = math.MaxUint64
	}
	n := 0
	for i, id := range v.Indices {
		c := copies(v.Values[i])
		for k := range c {
			h := mix64(uint64(id)<<8 | uint64(k))
			b, rest := h>>57, h&(1<<57-1) // the top 7 bits choose the bucket
			lowest[b] = min(lowest[b], rest)
		}
		n += c
	}
	for i, h := range lowest {
		if h != math.MaxUint64 {
			s.buckets[i] = uint8(1 + h%255)
		}
	}
	s.terms = uint16(min(n, math.MaxUint16))
	return s
}

// copies is how many times a term of frequency tf enters a sketch: 8 w², rounded, 1 to 64, w
// being its damped frequency 1 + ln tf. With squared weights the estimate (|A∩B| over the
// geometric mean of the sizes) is the cosine of damped frequencies wherever shared terms weigh
// alike in both papers; a word seen once enters 8 times, a pair of words seen once (frequency
// BigramWeight, w 0.31) once.
func copies(tf float32) int {
	if tf <= 0 {
		return 0
	}
	w := 1 + math.Log(float64(tf))
	return int(max(1, min(64, math.Round(8*w*w))))
}

// mix64 is SplitMix64's finaliser: term ids are FNV hashes, whose low bits are not uniform
// enough to pick buckets by.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Similarity estimates the cosine similarity of the two papers' term vectors: the MinHash
// estimate of the Jaccard index J of their copies of terms, corrected for 8-bit collisions,
// turned into a cosine with the sizes, |A∩B| = J(|A|+|B|)/(1+J). 0 when either has no terms.
func (s *Sketch) Similarity(o *Sketch) float64 {
	if s.terms == 0 || o.terms == 0 {
		return 0
	}
	equal, bothEmpty := 0, 0
	for i := 0; i < sketchBuckets; i += 8 {
		a := binary.LittleEndian.Uint64(s.buckets[i:])
		b := binary.LittleEndian.Uint64(o.buckets[i:])
		equal += zeroBytes(a ^ b)
		bothEmpty += zeroBytes(a | b)
	}
	used := sketchBuckets - bothEmpty
	if used == 0 {
		return 0
	}
	// Equal buckets include both-empty ones and chance collisions of the kept bits (1 in 255).
	const collide = 1.0 / 255
	j := (float64(equal-bothEmpty)/float64(used) - collide) / (1 - collide)
	if j <= 0 {
		return 0
	}
	na, nb := float64(s.terms), float64(o.terms)
	return min(1, j*(na+nb)/(1+j)/math.Sqrt(na*nb))
}

// zeroBytes counts the zero bytes of x.
func zeroBytes(x uint64) int {
	const lo7 = 0x7f7f7f7f7f7f7f7f
	// A byte's high bit ends up set exactly when the byte is non-zero (no carries between bytes).
	nonzero := ((x & lo7) + lo7 | x) & 0x8080808080808080
	return 8 - bits.OnesCount64(nonzero)
}

// SketchSize is the length of a Sketch's binary form.
const SketchSize = sketchBuckets + 2

// AppendBinary appends the sketch's SketchSize bytes to b (a store's snapshot keeps them).
func (s *Sketch) AppendBinary(b []byte) []byte {
	b = append(b, s.buckets[:]...)
	return append(b, byte(s.terms), byte(s.terms>>8))
}

// SetBinary sets the sketch from SketchSize bytes made by AppendBinary.
func (s *Sketch) SetBinary(b []byte) {
	copy(s.buckets[:], b[:sketchBuckets])
	s.terms = uint16(b[sketchBuckets]) | uint16(b[sketchBuckets+1])<<8
}
