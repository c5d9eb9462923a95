// Package sqlite is Postern's embedded store: an SQLite index
// (modernc.org/sqlite, pure Go) plus message files managed by internal/blob.
//
// On-disk layout, under the data directory:
//
//	index.db, index.db-wal    the SQLite index (WAL mode, synchronous=FULL);
//	                          messages up to blob.InlineMax (128 KiB) are kept
//	                          in its contents table, stored once per message
//	blobs/incoming/<qid>      larger messages being received or just committed
//	blobs/<xx>/<qid>          larger committed messages, one file per message
//
// Writes go through one writer goroutine that owns a single connection
// (group commit): sessions write and fsync their large message files in
// parallel, then hand the writer a function to run; the writer gathers
// whatever has queued up, fsyncs blobs/incoming once if any large message
// is in the batch, runs every function inside one transaction (each in its
// own savepoint, so one failure does not fail the others), commits with one
// WAL fsync, and only then wakes the callers. A batch of small messages
// thus costs one fsync in all.
//
// Crash guarantees: a Deliver that returned nil is in the committed index
// and its file is durable; a Deliver that did not return is either wholly
// committed or wholly absent. At Open, files left in blobs/incoming are
// promoted when the index knows them and deleted otherwise, so no partial
// message is ever visible. Any number of processes (the server and the
// command line) may open the same data directory; SQLite's locks serialize
// their writes.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/postern-mail/postern/internal/blob"
	"github.com/postern-mail/postern/internal/store"
)

var (
	commitSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "postern_store_commit_seconds",
		Help:    "Time to commit one batch of index writes, including the incoming directory fsync.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
	})
	commitBatch = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "postern_store_commit_batch_size",
		Help:    "Number of writes gathered into one commit (group commit).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	})
	commitsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_store_commits_total",
		Help: "Index transactions committed (each one WAL fsync).",
	})
	_ = promauto.NewCounterFunc(prometheus.CounterOpts{
		Name: "postern_store_fsyncs_total",
		Help: "fsyncs issued for durability: message files, the incoming directory, and one WAL fsync per commit (checkpoints not counted).",
	}, func() float64 { return float64(blob.Fsyncs.Load() + Commits.Load()) })
)

// Commits counts committed index transactions (one WAL fsync each).
var Commits atomic.Int64

const maxBatch = 256

// Store is the SQLite-backed store.Store.
type Store struct {
	dir   string
	rdb   *sql.DB // readers
	wdb   *sql.DB // the writer's single connection
	wconn *sql.Conn
	blobs *blob.Dir
	stmts map[string]*sql.Stmt // writer-goroutine only

	changes *store.Broadcaster // committed mailbox changes, published by the writer
	rstmts  sync.Map           // query text: prepared reader *sql.Stmt
	cache   entryCache         // mailboxes' entries for IMAP reads

	enqueueMu sync.Mutex
	onEnqueue []func()

	reqs      chan *writeReq
	lazySync  bool // the writer connection runs synchronous=NORMAL (writer goroutine only)
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

type writeReq struct {
	fn           func(w *wtx) error
	syncIncoming bool
	// noFsync marks a change whose loss in a power cut is harmless (IMAP
	// flags): a batch of only such changes commits without fsyncing the
	// WAL (synchronous=NORMAL), like Dovecot, which does not fsync flag
	// changes either. The next fsync'd commit or checkpoint makes it
	// durable; a crash of the process alone loses nothing, and a commit
	// never becomes visible partially. Messages and their routing are
	// never written this way.
	noFsync bool
	after   func() // run by the writer after a successful commit, in commit order
	done    chan error
}

// Open opens (creating if needed) the store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	blobs, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, err
	}
	dsn := "file:" + (&url.URL{Path: filepath.ToSlash(filepath.Join(dir, "index.db"))}).EscapedPath() +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(15000)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(4000)"
	wdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	ctx := context.Background()
	wconn, err := wdb.Conn(ctx)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: open index: %w", err)
	}
	if _, err := wconn.ExecContext(ctx, schema+queueSchema); err != nil {
		wconn.Close()
		wdb.Close()
		return nil, fmt.Errorf("store: create schema: %w", err)
	}
	rdb, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		wconn.Close()
		wdb.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	s := &Store{
		dir: dir, rdb: rdb, wdb: wdb, wconn: wconn, blobs: blobs,
		stmts:   map[string]*sql.Stmt{},
		changes: store.NewBroadcaster(),
		reqs:    make(chan *writeReq, maxBatch),
		closing: make(chan struct{}),
	}
	// Finish promotions a crash interrupted and delete unacknowledged files.
	if _, _, err := blobs.Recover(func(qid string) (bool, error) {
		var n int
		err := wconn.QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE qid = ?`, qid).Scan(&n)
		return n > 0, err
	}); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("store: recover: %w", err)
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

func (s *Store) closeDBs() {
	s.closeReadStmts()
	for _, st := range s.stmts {
		st.Close()
	}
	s.wconn.Close()
	s.wdb.Close()
	s.rdb.Close()
}

// ErrClosed is returned for writes after Close.
var ErrClosed = errors.New("store: closed")

// Close waits for queued writes, then closes the index.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.wg.Wait()
		s.closeDBs()
	})
	return nil
}

// write hands fn to the writer and waits for the commit. Once handed over,
// the write completes even if ctx is cancelled: the caller must learn
// whether it committed.
func (s *Store) write(req *writeReq) error {
	req.done = make(chan error, 1)
	select {
	case s.reqs <- req:
	case <-s.closing:
		return ErrClosed
	}
	return <-req.done
}

// exec is write for a plain function.
func (s *Store) exec(fn func(w *wtx) error) error {
	return s.write(&writeReq{fn: fn})
}

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.closing:
			// Drain what was handed over before Close.
			for {
				select {
				case r := <-s.reqs:
					s.runBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.runBatch(batch)
	}
}

// wtx is the writer's view of the open transaction.
type wtx struct {
	s   *Store
	ctx context.Context
}

func (w *wtx) stmt(q string) (*sql.Stmt, error) {
	if st, ok := w.s.stmts[q]; ok {
		return st, nil
	}
	st, err := w.s.wconn.PrepareContext(w.ctx, q)
	if err != nil {
		return nil, err
	}
	w.s.stmts[q] = st
	return st, nil
}

// Exec runs a write statement.
func (w *wtx) Exec(q string, args ...any) (sql.Result, error) {
	st, err := w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(w.ctx, args...)
}

// QueryRow runs a query inside the transaction.
func (w *wtx) QueryRow(q string, args ...any) *sql.Row {
	st, err := w.stmt(q)
	if err != nil {
		// Surface the prepare error through a failing query.
		return w.s.wconn.QueryRowContext(w.ctx, q, args...)
	}
	return st.QueryRowContext(w.ctx, args...)
}

// Query runs a query inside the transaction.
func (w *wtx) Query(q string, args ...any) (*sql.Rows, error) {
	st, err := w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(w.ctx, args...)
}

func (s *Store) runBatch(batch []*writeReq) {
	start := time.Now()
	ctx := context.Background()
	errs := make([]error, len(batch))
	fail := func(err error) {
		for i := range batch {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	needSync := false
	for _, r := range batch {
		needSync = needSync || r.syncIncoming
	}
	committed := false
	if needSync {
		if err := s.blobs.SyncIncoming(); err != nil {
			fail(err)
			goto reply
		}
	}
	if lazy := allNoFsync(batch); lazy != s.lazySync {
		mode := "FULL"
		if lazy {
			mode = "NORMAL"
		}
		if _, err := s.wconn.ExecContext(ctx, "PRAGMA synchronous="+mode); err != nil {
			fail(fmt.Errorf("store: synchronous=%s: %w", mode, err))
			goto reply
		}
		s.lazySync = lazy
	}
	if _, err := s.wexec(ctx, "BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("store: begin: %w", err))
		goto reply
	}
	for i, r := range batch {
		if _, err := s.wexec(ctx, "SAVEPOINT w"); err != nil {
			errs[i] = fmt.Errorf("store: savepoint: %w", err)
			continue
		}
		w := &wtx{s: s, ctx: ctx}
		if err := r.fn(w); err != nil {
			errs[i] = err
			s.wexec(ctx, "ROLLBACK TO w")
		}
		s.wexec(ctx, "RELEASE w")
	}
	if _, err := s.wexec(ctx, "COMMIT"); err != nil {
		s.wconn.ExecContext(ctx, "ROLLBACK")
		fail(fmt.Errorf("store: commit: %w", err))
		goto reply
	}
	committed = true
	Commits.Add(1)
	commitsTotal.Inc()
reply:
	commitSeconds.Observe(time.Since(start).Seconds())
	commitBatch.Observe(float64(len(batch)))
	for i, r := range batch {
		if committed && errs[i] == nil && r.after != nil {
			r.after()
		}
		r.done <- errs[i]
	}
}

// wexec runs one of the writer's transaction statements (BEGIN, SAVEPOINT,
// RELEASE, COMMIT...), prepared once: they run for every request, and
// SQLite's parser cost more than the statements themselves.
func (s *Store) wexec(ctx context.Context, q string) (sql.Result, error) {
	st, ok := s.stmts[q]
	if !ok {
		var err error
		if st, err = s.wconn.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		s.stmts[q] = st
	}
	return st.ExecContext(ctx)
}

// allNoFsync reports whether every request of the batch may commit without
// an fsync.
func allNoFsync(batch []*writeReq) bool {
	for _, r := range batch {
		if !r.noFsync {
			return false
		}
	}
	return true
}

func unixMilli(t time.Time) int64 { return t.UnixMilli() }

func fromMilli(ms int64) time.Time { return time.UnixMilli(ms) }
