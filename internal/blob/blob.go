// Package blob keeps message contents as files on disk.
//
// A Writer keeps a message in memory while it is small (up to InlineMax
// bytes): the store then saves it inside its index transaction, which costs
// no file creation and no fsync of its own. Only a larger message spills to
// a file, with the layout and guarantees below.
//
// On-disk layout, under the blob root:
//
//	incoming/<qid>      a message being received or just committed
//	<xx>/<qid>          a committed message; xx is the last two characters of qid
//
// Crash guarantees: a writer writes incoming/<qid> and fsyncs it; before the
// index commits, the incoming directory is fsync'd once for the whole batch
// (SyncIncoming). After the commit the file is renamed into its shard
// (Promote); that rename needs no fsync because Recover, run at every start,
// finishes it: a file left in incoming/ is moved into place when the index
// knows its qid and deleted otherwise (it was never acknowledged). Readers
// look in the shard first and in incoming/ second.
package blob

import (
	"bufio"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Fsyncs counts every fsync this package issues (files and directories).
var Fsyncs atomic.Int64

// Dir is a blob root directory.
type Dir struct {
	root string
}

// Open creates the layout under root if needed.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(filepath.Join(root, "incoming"), 0o750); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &Dir{root: root}, nil
}

var enc = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewQueueID returns a unique, time-ordered message identifier: 8 bytes of
// Unix nanoseconds and 7 random bytes, base32 (24 characters).
func NewQueueID() string {
	var b [15]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return enc.EncodeToString(b[:])
}

// ValidID reports whether s could be a queue ID (safe as a file name).
func ValidID(s string) bool {
	if len(s) != 24 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

func (d *Dir) incomingPath(qid string) string {
	return filepath.Join(d.root, "incoming", qid)
}

func (d *Dir) shardPath(qid string) string {
	return filepath.Join(d.root, qid[len(qid)-2:], qid)
}

// InlineMax is the largest message a Writer keeps in memory for the index.
const InlineMax = 128 << 10

// Writer collects one message's contents: in memory up to InlineMax, in
// incoming/<qid> beyond.
type Writer struct {
	dir  *Dir
	qid  string
	mem  []byte
	f    *os.File
	bw   *bufio.Writer
	size int64
	done bool
}

// Create starts a new blob with a fresh queue ID.
func (d *Dir) Create() (*Writer, error) {
	return &Writer{dir: d, qid: NewQueueID()}, nil
}

// Inline returns the contents and true when the message stayed in memory.
func (w *Writer) Inline() ([]byte, bool) {
	return w.mem, w.f == nil
}

// spill moves the message to a file once it outgrows InlineMax.
func (w *Writer) spill() error {
	f, err := os.OpenFile(w.dir.incomingPath(w.qid), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	w.f = f
	w.bw = bufio.NewWriterSize(f, 64<<10)
	_, err = w.bw.Write(w.mem)
	w.mem = nil
	return err
}

// QueueID returns the blob's queue ID.
func (w *Writer) QueueID() string { return w.qid }

// Size returns the bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Write appends to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("blob: write after finish")
	}
	if w.f == nil {
		if len(w.mem)+len(p) <= InlineMax {
			w.mem = append(w.mem, p...)
			w.size += int64(len(p))
			return len(p), nil
		}
		if err := w.spill(); err != nil {
			return 0, err
		}
	}
	n, err := w.bw.Write(p)
	w.size += int64(n)
	return n, err
}

// Finish flushes and fsyncs the file and closes it; the blob stays in
// incoming/ until Promote. An inline message needs nothing.
func (w *Writer) Finish() error {
	if w.done {
		return errors.New("blob: already finished")
	}
	w.done = true
	if w.f == nil {
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return fmt.Errorf("blob: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return fmt.Errorf("blob: fsync: %w", err)
	}
	Fsyncs.Add(1)
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

// Abort discards the blob.
func (w *Writer) Abort() error {
	if w.f == nil {
		w.done, w.mem = true, nil
		return nil
	}
	if !w.done {
		w.done = true
		w.f.Close()
	}
	err := os.Remove(w.f.Name())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// SyncIncoming fsyncs the incoming directory, making every finished blob's
// name durable. Call once per batch before the index commit.
func (d *Dir) SyncIncoming() error {
	if err := syncDir(filepath.Join(d.root, "incoming")); err != nil {
		return fmt.Errorf("blob: fsync incoming: %w", err)
	}
	return nil
}

// Promote moves a committed blob from incoming/ into its shard.
func (d *Dir) Promote(qid string) error {
	dst := d.shardPath(qid)
	err := os.Rename(d.incomingPath(qid), dst)
	if errors.Is(err, os.ErrNotExist) {
		if mkErr := os.MkdirAll(filepath.Dir(dst), 0o750); mkErr != nil {
			return fmt.Errorf("blob: %w", mkErr)
		}
		err = os.Rename(d.incomingPath(qid), dst)
	}
	if err != nil {
		return fmt.Errorf("blob: promote %s: %w", qid, err)
	}
	return nil
}

// Open opens a stored blob for reading.
func (d *Dir) Open(qid string) (*os.File, error) {
	if !ValidID(qid) {
		return nil, fmt.Errorf("blob: bad id %q", qid)
	}
	f, err := os.Open(d.shardPath(qid))
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(d.incomingPath(qid))
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return f, nil
}

// Remove deletes a stored blob (after its last reference went away).
func (d *Dir) Remove(qid string) error {
	if !ValidID(qid) {
		return fmt.Errorf("blob: bad id %q", qid)
	}
	err1 := os.Remove(d.shardPath(qid))
	err2 := os.Remove(d.incomingPath(qid))
	if err1 == nil || err2 == nil || (errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist)) {
		return nil
	}
	return fmt.Errorf("blob: remove %s: %w", qid, err1)
}

// Recover finishes what a crash interrupted: every file in incoming/ is
// promoted if known(qid) says the index committed it, and deleted otherwise.
// It returns how many were promoted and deleted.
func (d *Dir) Recover(known func(qid string) (bool, error)) (promoted, deleted int, err error) {
	ents, err := os.ReadDir(filepath.Join(d.root, "incoming"))
	if err != nil {
		return 0, 0, fmt.Errorf("blob: recover: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !ValidID(name) {
			if strings.HasPrefix(name, ".") {
				continue
			}
			os.Remove(d.incomingPath(name))
			deleted++
			continue
		}
		ok, err := known(name)
		if err != nil {
			return promoted, deleted, err
		}
		if ok {
			if err := d.Promote(name); err != nil {
				return promoted, deleted, err
			}
			promoted++
		} else {
			if err := os.Remove(d.incomingPath(name)); err != nil {
				return promoted, deleted, fmt.Errorf("blob: recover: %w", err)
			}
			deleted++
		}
	}
	return promoted, deleted, nil
}

// ReadAll reads a whole blob; for tests and small tools.
func (d *Dir) ReadAll(qid string) ([]byte, error) {
	f, err := d.Open(qid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
