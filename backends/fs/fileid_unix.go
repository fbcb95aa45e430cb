//go:build unix

package fs

import (
	"os"
	"syscall"
)

// fileID returns the inode number of fi, which tells a replaced file from
// its predecessor even when size and modification time agree.
func fileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
