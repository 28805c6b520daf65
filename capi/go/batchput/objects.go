package batchput

/*
#include <stdlib.h>
#include "batchput.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// Statuses of the calls on what is stored.
const (
	// Done is not an error: a listing has no more objects.
	Done Status = C.BP_DONE
	// BufferTooSmall: the caller's buffer cannot hold the answer.
	BufferTooSmall Status = C.BP_BUFFER_TOO_SMALL
)

// Object is an object as a listing gives it (bp_object).
type Object struct {
	Key  string
	Size uint64
	ETag string
	// LastModified is the zero Time when the server does not say.
	LastModified time.Time
}

// List returns every object under prefix ("" for the whole bucket), keys
// exactly as stored, reading the listing a page (up to 1,000) at a time.
func (u *Uploader) List(prefix string) ([]Object, error) {
	var out []Object
	err := u.Each(prefix, func(o Object) bool {
		out = append(out, o)
		return true
	})
	return out, err
}

// Each calls fn for every object under prefix, in the server's order,
// fetching pages as it goes, until fn returns false.
func (u *Uploader) Each(prefix string, fn func(Object) bool) error {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return misuse("the uploader is closed")
	}
	cp := C.CString(prefix)
	defer C.free(unsafe.Pointer(cp))
	var list *C.bp_list
	if err := call(func() C.bp_status { return C.bp_list_open(u.p, cp, &list) }); err != nil {
		return err
	}
	defer C.bp_list_free(list)
	for {
		var o C.bp_object
		o.struct_size = C.size_t(unsafe.Sizeof(o))
		done := false
		err := call(func() C.bp_status {
			st := C.bp_list_next(list, &o)
			if st == C.BP_DONE {
				done = true
				return C.BP_OK
			}
			return st
		})
		if err != nil || done {
			return err
		}
		obj := Object{Key: C.GoString(o.key), Size: uint64(o.size), ETag: C.GoString(o.etag)}
		if o.last_modified >= 0 {
			obj.LastModified = time.Unix(int64(o.last_modified), 0).UTC()
		}
		if !fn(obj) {
			return nil
		}
	}
}

// DeletePrefix deletes every object under prefix ("" for the whole bucket)
// and returns how many it deleted. When some could not be deleted the
// count is still returned, with an *Error naming the first and how many.
func (u *Uploader) DeletePrefix(prefix string) (uint64, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return 0, misuse("the uploader is closed")
	}
	cp := C.CString(prefix)
	defer C.free(unsafe.Pointer(cp))
	var n C.uint64_t
	err := call(func() C.bp_status { return C.bp_delete_prefix(u.p, cp, &n) })
	return uint64(n), err
}

// Presign returns a URL that lets anyone GET (or PUT) key with a plain
// HTTP client until it expires (whole seconds, 1s to 7 days).
func (u *Uploader) Presign(method, key string, expires time.Duration) (string, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return "", misuse("the uploader is closed")
	}
	cm, ck := C.CString(method), C.CString(key)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(ck))
	secs := expires / time.Second
	if secs > 1<<32-1 {
		secs = 1<<32 - 1 // refused by the library as out of range
	}
	var need C.size_t
	err := call(func() C.bp_status {
		st := C.bp_presign(u.p, cm, ck, C.uint32_t(secs), nil, 0, &need)
		if st == C.BP_BUFFER_TOO_SMALL {
			return C.BP_OK
		}
		return st
	})
	if err != nil {
		return "", err
	}
	buf := make([]byte, int(need))
	err = call(func() C.bp_status {
		return C.bp_presign(u.p, cm, ck, C.uint32_t(secs), (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &need)
	})
	if err != nil {
		return "", err
	}
	return string(buf[:len(buf)-1]), nil
}
