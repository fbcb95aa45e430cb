package backends

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
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

// MultipartETag is the ETag S3 gives an object completed from parts whose
// MD5s, in order, are partMD5s: the hex MD5 of the binary MD5s one after
// another, a dash, and the number of parts. Only that content has it, so
// it proves which parts an object was assembled from.
func MultipartETag(partMD5s [][]byte) string {
	h := md5.New()
	for _, s := range partMD5s {
		h.Write(s)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(partMD5s))
}

// PartMD5 decodes a part's ETag (a hex MD5, quoted or not) to its MD5.
func PartMD5(etag string) ([]byte, error) {
	raw, err := hex.DecodeString(TrimETag(etag))
	if err != nil || len(raw) != md5.Size {
		return nil, fmt.Errorf("part etag %q is not an md5", etag)
	}
	return raw, nil
}
