package badgerstore_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string, opts store.Options) store.Store {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		s, err := badgerstore.Open(context.Background(), dir, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpenBadOptions(t *testing.T) {
	if _, err := badgerstore.Open(context.Background(), t.TempDir(), store.Options{}); err == nil {
		t.Fatal("Open without kinds succeeded")
	}
	if _, err := badgerstore.Open(context.Background(), "", store.Options{Kinds: []string{"person"}}); err == nil {
		t.Fatal("Open without a directory succeeded")
	}
}
