package backends

import (
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
)

// ContentMD5 returns the base64 MD5 of the size bytes r holds from its
// current position (the Content-MD5 header of a locked write), and seeks r
// back to that position so that the write sends the same bytes.
func ContentMD5(r io.ReadSeeker, size int64) (string, error) {
	pos, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", fmt.Errorf("content-md5: body position: %w", err)
	}
	h := md5.New()
	n, err := io.CopyN(h, r, size)
	if err != nil {
		return "", fmt.Errorf("content-md5: read %d of %d bytes: %w", n, size, err)
	}
	if _, err := r.Seek(pos, io.SeekStart); err != nil {
		return "", fmt.Errorf("content-md5: rewind body: %w", err)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}
