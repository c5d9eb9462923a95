//go:build !windows

package blob

import "os"

// syncDir fsyncs a directory so that names created in it are durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return err
	}
	Fsyncs.Add(1)
	return nil
}
