//go:build windows

package blob

// syncDir is a no-op on Windows: NTFS journals directory entries and a
// directory handle cannot be flushed with FlushFileBuffers.
func syncDir(path string) error { return nil }
