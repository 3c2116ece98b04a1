package embedded

// termTable maps term ids to their index in index.terms. It replaces a Go map on the path every
// posting of a backfill takes (millions of terms, a lookup per term of each paper): open
// addressing with linear probing over one array of (id, index) pairs costs one cache miss where
// the map's groups cost two, and building it at open from the snapshot is a loop of stores.
type termTable struct {
	slots []termSlot // a power of two long; at most half full
	n     int
}

type termSlot struct {
	id uint32
	at int32 // index + 1; 0: empty
}

func newTermTable(n int) *termTable {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return &termTable{slots: make([]termSlot, size)}
}

// home is where id's probe starts. Term ids are FNV hashes already; the multiply spreads the
// ids of a backfill's new terms over the high bits the mask keeps.
func (t *termTable) home(id uint32) int {
	return int((uint64(id) * 0x9E3779B97F4A7C15 >> 32) & uint64(len(t.slots)-1))
}

// get returns id's index.
func (t *termTable) get(id uint32) (int32, bool) {
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.at == 0 {
			return 0, false
		}
		if s.id == id {
			return s.at - 1, true
		}
	}
}

// set gives id the index at, adding it if new.
func (t *termTable) set(id uint32, at int32) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.at == 0 {
			*s = termSlot{id: id, at: at + 1}
			t.n++
			return
		}
		if s.id == id {
			s.at = at + 1
			return
		}
	}
}

func (t *termTable) grow() {
	old := t.slots
	t.slots, t.n = make([]termSlot, 2*len(old)), 0
	for _, s := range old {
		if s.at != 0 {
			t.set(s.id, s.at-1)
		}
	}
}

// len is the number of ids.
func (t *termTable) len() int { return t.n }

// each calls fn with every id and its index, in no order.
func (t *termTable) each(fn func(id uint32, at int32)) {
	for _, s := range t.slots {
		if s.at != 0 {
			fn(s.id, s.at-1)
		}
	}
}
