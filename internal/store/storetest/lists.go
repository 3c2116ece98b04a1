package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/store"
)

// testNeighbourLists: lists are stored for stored papers only, read in the order asked,
// scanned whole in pages, counted, deleted with their paper, and reset with their state.
func testNeighbourLists(t *testing.T, s store.Store) {
	nl, ok := store.As[store.NeighbourLists](s)
	if !ok {
		t.Skip("the store keeps no neighbour lists")
	}
	if st, err := nl.ListsState(ctx); err != nil || st != nil {
		t.Fatalf("state of a new store: %q, %v; want none", st, err)
	}
	var papers []store.Paper
	var lists []store.ListRecord
	for i := range 7 {
		id := fmt.Sprintf("p%d", i)
		papers = append(papers, Paper(id, "paper "+id, "about lists"))
		lists = append(lists, store.ListRecord{ID: id, Data: []byte("list of " + id)})
	}
	upsert(t, s, papers...)
	ghost := store.ListRecord{ID: "never-stored", Data: []byte("x")}
	if err := nl.PutLists(ctx, append(slices.Clone(lists), ghost)); err != nil {
		t.Fatal(err)
	}
	got, err := nl.Lists(ctx, []string{"p3", "never-stored", "p0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "p3" || got[1].ID != "p0" || !bytes.Equal(got[0].Data, lists[3].Data) {
		t.Fatalf("Lists(p3, never-stored, p0) = %v; want p3's and p0's, in that order", got)
	}
	// Replacing a list keeps the count.
	lists[2].Data = []byte("new list of p2")
	if err := nl.PutLists(ctx, lists[2:3]); err != nil {
		t.Fatal(err)
	}
	if n, err := nl.CountLists(ctx); err != nil || n != 7 {
		t.Fatalf("CountLists = %d, %v; want 7", n, err)
	}
	if err := nl.PutListsState(ctx, []byte("state 1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, []string{"p5"}); err != nil {
		t.Fatal(err)
	}
	// Pages of 2 cover every list once, in the store's order, without the deleted paper's.
	var seen []string
	after := ""
	for {
		page, err := nl.ScanLists(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("a page of %d lists; asked 2", len(page))
		}
		for _, r := range page {
			seen = append(seen, r.ID)
			if want := lists[r.ID[1]-'0'].Data; !bytes.Equal(r.Data, want) {
				t.Errorf("scanned %s: %q, want %q", r.ID, r.Data, want)
			}
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	slices.Sort(seen)
	if want := []string{"p0", "p1", "p2", "p3", "p4", "p6"}; !slices.Equal(seen, want) {
		t.Fatalf("scanned %v; want %v", seen, want)
	}
	if n, err := nl.CountLists(ctx); err != nil || n != 6 {
		t.Fatalf("CountLists after a delete = %d, %v; want 6", n, err)
	}
	if st, err := nl.ListsState(ctx); err != nil || string(st) != "state 1" {
		t.Fatalf("state = %q, %v", st, err)
	}
	if err := nl.ResetLists(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := nl.CountLists(ctx); err != nil || n != 0 {
		t.Fatalf("CountLists after a reset = %d, %v; want 0", n, err)
	}
	if st, err := nl.ListsState(ctx); err != nil || st != nil {
		t.Fatalf("state after a reset: %q, %v; want none", st, err)
	}
	if got, err := nl.Lists(ctx, []string{"p1"}); err != nil || len(got) != 0 {
		t.Fatalf("Lists after a reset = %v, %v", got, err)
	}
}
