package batchput

// Downloads: jobs like uploads (Poll, Wait, Stop, Pause, Resume, Close),
// whose files take their names only once complete and checked.

/*
#include <stdlib.h>
#include "batchput.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Verified is how a downloaded file was checked before it took its name
// (bp_verified).
type Verified int

// The checks, with the C ABI's values.
const (
	// VerifiedNone: not checked yet (the file is not complete), or an upload.
	VerifiedNone Verified = C.BP_VERIFIED_NONE
	// VerifiedMD5: the MD5 of its bytes is the object's ETag.
	VerifiedMD5 Verified = C.BP_VERIFIED_MD5
	// VerifiedMultipartETag: the MD5s of its parts, along the object's own
	// part boundaries, give the object's multipart ETag.
	VerifiedMultipartETag Verified = C.BP_VERIFIED_MULTIPART_ETAG
	// VerifiedSize: only its size, and the object's ETag at every GET (the
	// store's ETag cannot be recomputed).
	VerifiedSize Verified = C.BP_VERIFIED_SIZE
	// VerifiedCRC32C: the CRC32C of its bytes is the one the store keeps
	// for the whole object (where the ETag cannot be recomputed).
	VerifiedCRC32C Verified = C.BP_VERIFIED_CRC32C
)

// String is the check's name as the CLI's --json says it ("md5",
// "multipart-etag", "size", "crc32c"; "" for none).
func (v Verified) String() string {
	names := [...]string{"", "md5", "multipart-etag", "size", "crc32c"}
	if v < 0 || int(v) >= len(names) {
		return fmt.Sprintf("Verified(%d)", int(v))
	}
	return names[v]
}

// Download starts a job that writes each object Key to the local file
// Path. Every key, destination (not a directory, no two keys to one path)
// and object is checked before any byte moves; a bad batch is an *Error
// and nothing is written. A destination never holds a partial or
// unchecked file: each object is fetched into a temporary file beside it
// and renamed into place once checked (FileReport.Verified says how).
func (u *Uploader) Download(files []File) (*Job, error) {
	return u.start(files, "", true)
}

// DownloadWithJournal is Download, recording the job in a journal so that
// it can be paused and resumed (Resume).
func (u *Uploader) DownloadWithJournal(files []File, journal string) (*Job, error) {
	if journal == "" {
		return nil, &Error{Status: InvalidArgument, Message: "journal path is empty"}
	}
	return u.start(files, journal, true)
}

// DownloadPrefix lists every object under prefix and downloads them below
// dir (made if missing): a key's path below dir is what follows the
// prefix's last '/'. A key that would land outside dir refuses the whole
// job, naming it, before anything is written. journal ("" for none)
// records the job for Pause and Resume. It blocks while it lists.
func (u *Uploader) DownloadPrefix(prefix, dir, journal string) (*Job, error) {
	cp, cd := C.CString(prefix), C.CString(dir)
	defer C.free(unsafe.Pointer(cp))
	defer C.free(unsafe.Pointer(cd))
	var cj *C.char
	if journal != "" {
		cj = C.CString(journal)
		defer C.free(unsafe.Pointer(cj))
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return nil, misuse("the uploader is closed")
	}
	j := &Job{up: u}
	if err := call(func() C.bp_status { return C.bp_download_prefix(u.p, cp, cd, cj, &j.p) }); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(j, (*Job).Close)
	return j, nil
}
