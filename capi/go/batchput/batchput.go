// Package batchput uploads batches of local files to S3-compatible object
// storage through the batchput library's C ABI (cgo).
//
//	up, err := batchput.NewUploader(map[string]string{
//		"endpoint": "http://127.0.0.1:9000", "bucket": "photos",
//		"access_key": "AKID", "secret_key": "SECRET",
//	})
//	if err != nil { ... }
//	defer up.Close()
//	job, err := up.Upload([]batchput.File{{Path: "/data/a.jpg", Key: "2026/a.jpg"}})
//	if err != nil { ... }
//	defer job.Close()
//	for done, _ := job.Wait(time.Second); !done; done, _ = job.Wait(time.Second) {
//		p, _ := job.Poll()
//		fmt.Println(p.BytesDone, "/", p.BytesTotal)
//	}
//	if err := job.Err(); err != nil { ... } // nil when the job succeeded
//
// The package links -lbatchput from the repository's target/release or
// target/debug (build the library with cargo first); CGO_LDFLAGS="-L/dir"
// points it elsewhere. Every method of Job may be called from any goroutine:
// one may Stop while another Waits. The library never calls back into Go:
// its log is pulled (SetLogLevel, then DrainLog from your own loop).
package batchput

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -L${SRCDIR}/../../../target/release -L${SRCDIR}/../../../target/debug
#cgo LDFLAGS: -Wl,-rpath,${SRCDIR}/../../../target/release -Wl,-rpath,${SRCDIR}/../../../target/debug
#cgo LDFLAGS: -lbatchput -ldl -lpthread -lm
#include <stdlib.h>
#include "batchput.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
	"unsafe"
)

// Status is what a call returned (bp_status); OK is 0.
type Status int

// The statuses of the C ABI, with the same values.
const (
	OK              Status = C.BP_OK
	Pending         Status = C.BP_PENDING
	InvalidArgument Status = C.BP_INVALID_ARGUMENT
	InvalidUTF8     Status = C.BP_INVALID_UTF8
	Misuse          Status = C.BP_MISUSE
	InvalidInput    Status = C.BP_INVALID_INPUT
	LocalIO         Status = C.BP_LOCAL_IO
	FileChanged     Status = C.BP_FILE_CHANGED
	Server          Status = C.BP_SERVER
	Network         Status = C.BP_NETWORK
	Timeout         Status = C.BP_TIMEOUT
	Integrity       Status = C.BP_INTEGRITY
	Stopped         Status = C.BP_STOPPED
	Paused          Status = C.BP_PAUSED
	Journal         Status = C.BP_JOURNAL
	JournalLocked   Status = C.BP_JOURNAL_LOCKED
	Internal        Status = C.BP_INTERNAL
	Panic           Status = C.BP_PANIC
	Empty           Status = C.BP_EMPTY
	LoggerInUse     Status = C.BP_LOGGER_IN_USE
)

// String is the library's static text for the status.
func (s Status) String() string {
	return C.GoString(C.bp_status_str(C.uint32_t(s)))
}

// Error is a failed call or job: its status and the library's message,
// which names the function and the argument or option at fault.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("batchput: %s (%s)", e.Message, e.Status)
}

// JobState is where a job is in its life (bp_job_state).
type JobState int

// Job states.
const (
	JobQueued    JobState = C.BP_JOB_QUEUED
	JobRunning   JobState = C.BP_JOB_RUNNING
	JobSucceeded JobState = C.BP_JOB_SUCCEEDED
	JobFailed    JobState = C.BP_JOB_FAILED
	JobStopped   JobState = C.BP_JOB_STOPPED
	JobPaused    JobState = C.BP_JOB_PAUSED
)

// Ended reports whether the state is final.
func (s JobState) Ended() bool { return s != JobQueued && s != JobRunning }

func (s JobState) String() string {
	names := [...]string{"queued", "running", "succeeded", "failed", "stopped", "paused"}
	if s < 0 || int(s) >= len(names) {
		return fmt.Sprintf("JobState(%d)", int(s))
	}
	return names[s]
}

// FileState is what happened to one file (bp_file_state).
type FileState int

// File states.
const (
	FileNotStarted FileState = C.BP_FILE_NOT_STARTED
	FileRunning    FileState = C.BP_FILE_RUNNING
	FileCompleted  FileState = C.BP_FILE_COMPLETED
	FileFailed     FileState = C.BP_FILE_FAILED
	FileAborted    FileState = C.BP_FILE_ABORTED
	FilePaused     FileState = C.BP_FILE_PAUSED
	// FileAbortFailed: the multipart upload could not be aborted in time and
	// is still open on the server (FileReport.UploadID names it).
	FileAbortFailed FileState = C.BP_FILE_ABORT_FAILED
	// FileUnknown: cut off while the server may have been acting on it; the
	// object may or may not exist.
	FileUnknown FileState = C.BP_FILE_UNKNOWN
)

func (s FileState) String() string {
	names := [...]string{"not started", "running", "completed", "failed", "aborted", "paused", "abort failed", "unknown"}
	if s < 0 || int(s) >= len(names) {
		return fmt.Sprintf("FileState(%d)", int(s))
	}
	return names[s]
}

// IntegrityMode is how a job's data is checked (bp_integrity). (Integrity
// is the status BP_INTEGRITY.)
type IntegrityMode int

// Integrity modes. With integrity=auto a job gets IntegrityCRC32C where the
// store verifies it, else IntegrityETagMD5.
const (
	// IntegrityUnknown: not settled yet (queued, or probing the store), or
	// the job ended before it had data to send.
	IntegrityUnknown    IntegrityMode = C.BP_INTEGRITY_UNKNOWN
	IntegrityETagMD5    IntegrityMode = C.BP_INTEGRITY_ETAG_MD5
	IntegrityContentMD5 IntegrityMode = C.BP_INTEGRITY_CONTENT_MD5
	IntegrityCRC32C     IntegrityMode = C.BP_INTEGRITY_CRC32C
	IntegrityNone       IntegrityMode = C.BP_INTEGRITY_NONE
)

// String is the option value that names the mode ("crc32c", "etag-md5", ...).
func (i IntegrityMode) String() string {
	names := [...]string{"unknown", "etag-md5", "content-md5", "crc32c", "none"}
	if i < 0 || int(i) >= len(names) {
		return fmt.Sprintf("IntegrityMode(%d)", int(i))
	}
	return names[i]
}

// Progress is a snapshot of a job (bp_progress). Bytes and parts count what
// the server acknowledged.
type Progress struct {
	State                               JobState
	FilesTotal, FilesDone, FilesFailed  uint64
	PartsTotal, PartsDone               uint64
	BytesTotal, BytesDone               uint64
	SpeedBps, AvgSpeedBps, PeakSpeedBps float64
	Elapsed                             time.Duration
	Err                                 Status // first fatal error; OK if none
	// BytesSent counts bytes written to the network, acknowledged or not;
	// it goes back down when a part is retried.
	BytesSent uint64
	// IntegrityUsed is how the job's data is checked, once settled.
	IntegrityUsed IntegrityMode
}

// FileReport is what happened to one file (bp_file_report).
type FileReport struct {
	Path, Key                 string
	Size, BytesDone           uint64
	AvgSpeedBps, PeakSpeedBps float64
	State                     FileState
	ETag                      string // "" until the file is complete
	Err                       Status
	// UploadID is the multipart upload open on the server for this file
	// (running, paused, FileAbortFailed); "" when none.
	UploadID string
	// Verified is how a downloaded file was checked once complete;
	// VerifiedNone before, and for uploads.
	Verified Verified
}

// File is a local file and the key it uploads to (for Download: the
// destination the object at Key is written to).
type File struct {
	Path, Key string
}

// Version is the library's version ("0.3.0").
func Version() string { return C.GoString(C.bp_version()) }

// VersionNumber is MAJOR*1000000 + MINOR*1000 + PATCH of the library loaded.
func VersionNumber() uint32 { return uint32(C.bp_version_number()) }

// HeaderVersionNumber is the same number for the header this package was
// built against.
const HeaderVersionNumber = C.BATCHPUT_VERSION_NUMBER

// call runs f and turns a failure status into an *Error. The last error is
// per OS thread in C, so the goroutine stays on its thread until it is read.
func call(f func() C.bp_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.BP_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: copyMessage(func(buf *C.char, n C.size_t, w *C.size_t) C.bp_status {
		return C.bp_last_error(buf, n, w)
	})}
}

// copyMessage asks for the length first, then copies into a buffer that fits.
func copyMessage(f func(*C.char, C.size_t, *C.size_t) C.bp_status) string {
	var n C.size_t
	if f(nil, 0, &n) != C.BP_OK {
		return ""
	}
	buf := make([]byte, int(n)+1)
	if f((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n) != C.BP_OK {
		return ""
	}
	return string(buf[:n])
}

func misuse(what string) error {
	return &Error{Status: Misuse, Message: what}
}

// Uploader uploads batches to one bucket; its jobs run one after another.
// Close stops the jobs still running (aborting their uploads).
type Uploader struct {
	mu sync.RWMutex
	p  *C.bp_uploader
}

// NewUploader makes an uploader from bp_config_set options ("endpoint",
// "bucket", "access_key", "secret_key", "part_size", ...). An unknown option
// or a bad value is an *Error naming it.
func NewUploader(options map[string]string) (*Uploader, error) {
	if VersionNumber() != HeaderVersionNumber {
		return nil, misuse(fmt.Sprintf("built against batchput %d but loaded %d", HeaderVersionNumber, VersionNumber()))
	}
	cfg := C.bp_config_new()
	if cfg == nil {
		return nil, &Error{Status: Internal, Message: "bp_config_new returned NULL"}
	}
	defer C.bp_config_free(cfg)
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same error first, every run
	for _, k := range keys {
		ck, cv := C.CString(k), C.CString(options[k])
		err := call(func() C.bp_status { return C.bp_config_set(cfg, ck, cv) })
		C.free(unsafe.Pointer(ck))
		C.free(unsafe.Pointer(cv))
		if err != nil {
			return nil, err
		}
	}
	u := &Uploader{}
	if err := call(func() C.bp_status { return C.bp_uploader_new(cfg, &u.p) }); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(u, (*Uploader).Close)
	return u, nil
}

// Upload starts a job for files. Every file and key is checked before any
// byte is sent; a bad batch is an *Error.
func (u *Uploader) Upload(files []File) (*Job, error) {
	return u.start(files, "", false)
}

// UploadWithJournal is Upload, recording the job in a journal so that it
// can be paused and resumed.
func (u *Uploader) UploadWithJournal(files []File, journal string) (*Job, error) {
	if journal == "" {
		return nil, &Error{Status: InvalidArgument, Message: "journal path is empty"}
	}
	return u.start(files, journal, false)
}

// start makes the batch and starts it: an upload of (path, key) pairs, or
// with download a download of (destination, key) pairs.
func (u *Uploader) start(files []File, journal string, download bool) (*Job, error) {
	batch := C.bp_batch_new()
	if batch == nil {
		return nil, &Error{Status: Internal, Message: "bp_batch_new returned NULL"}
	}
	defer C.bp_batch_free(batch)
	for _, f := range files {
		cp, ck := C.CString(f.Path), C.CString(f.Key)
		err := call(func() C.bp_status { return C.bp_batch_add(batch, cp, ck) })
		C.free(unsafe.Pointer(cp))
		C.free(unsafe.Pointer(ck))
		if err != nil {
			return nil, err
		}
	}
	if journal != "" {
		cj := C.CString(journal)
		err := call(func() C.bp_status { return C.bp_batch_set_journal(batch, cj) })
		C.free(unsafe.Pointer(cj))
		if err != nil {
			return nil, err
		}
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return nil, misuse("the uploader is closed")
	}
	j := &Job{up: u}
	if err := call(func() C.bp_status {
		if download {
			return C.bp_download_start(u.p, batch, &j.p)
		}
		return C.bp_start(u.p, batch, &j.p)
	}); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(j, (*Job).Close)
	return j, nil
}

// Resume continues the job recorded in a journal (paused, crashed, killed).
func (u *Uploader) Resume(journal string) (*Job, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return nil, misuse("the uploader is closed")
	}
	cj := C.CString(journal)
	defer C.free(unsafe.Pointer(cj))
	j := &Job{up: u}
	if err := call(func() C.bp_status { return C.bp_resume(u.p, cj, &j.p) }); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(j, (*Job).Close)
	return j, nil
}

// Cleanup aborts the multipart uploads under prefix initiated at least
// olderThan ago, and returns how many it aborted.
func (u *Uploader) Cleanup(prefix string, olderThan time.Duration) (uint64, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.p == nil {
		return 0, misuse("the uploader is closed")
	}
	cp := C.CString(prefix)
	defer C.free(unsafe.Pointer(cp))
	var n C.uint64_t
	err := call(func() C.bp_status { return C.bp_cleanup(u.p, cp, C.uint64_t(olderThan/time.Second), &n) })
	return uint64(n), err
}

// Close stops the uploader's running jobs (aborting their uploads), waits
// for them and frees the uploader. Closing twice is harmless.
func (u *Uploader) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.p != nil {
		C.bp_uploader_free(u.p)
		u.p = nil
	}
}

// Job is a started batch. Poll, Wait, Stop, Pause and the reports may be
// used from any goroutine at once.
type Job struct {
	mu sync.RWMutex
	p  *C.bp_job
	up *Uploader // closing the uploader stops the job: keep it alive with the job
}

func (j *Job) with(f func(p *C.bp_job) error) error {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.p == nil {
		return misuse("the job is closed")
	}
	return f(j.p)
}

// Poll copies a snapshot of the job's progress; it never blocks.
func (j *Job) Poll() (Progress, error) {
	var out C.bp_progress
	out.struct_size = C.sizeof_bp_progress
	err := j.with(func(p *C.bp_job) error {
		return call(func() C.bp_status { return C.bp_job_poll(p, &out) })
	})
	if err != nil {
		return Progress{}, err
	}
	return Progress{
		State:         JobState(out.state),
		FilesTotal:    uint64(out.files_total),
		FilesDone:     uint64(out.files_done),
		FilesFailed:   uint64(out.files_failed),
		PartsTotal:    uint64(out.parts_total),
		PartsDone:     uint64(out.parts_done),
		BytesTotal:    uint64(out.bytes_total),
		BytesDone:     uint64(out.bytes_done),
		SpeedBps:      float64(out.speed_bps),
		AvgSpeedBps:   float64(out.avg_speed_bps),
		PeakSpeedBps:  float64(out.peak_speed_bps),
		Elapsed:       time.Duration(out.elapsed_ms) * time.Millisecond,
		Err:           Status(out.error),
		BytesSent:     uint64(out.bytes_sent),
		IntegrityUsed: IntegrityMode(out.integrity_used),
	}, nil
}

// Wait waits until the job ends or timeout passes (negative: no limit) and
// reports whether it ended.
func (j *Job) Wait(timeout time.Duration) (bool, error) {
	ms := C.uint32_t(C.BP_WAIT_FOREVER)
	if timeout >= 0 {
		m := timeout.Milliseconds()
		if m >= int64(C.BP_WAIT_FOREVER) {
			m = int64(C.BP_WAIT_FOREVER) - 1
		}
		ms = C.uint32_t(m)
	}
	ended := false
	err := j.with(func(p *C.bp_job) error {
		st := C.bp_job_wait(p, ms)
		if st == C.BP_PENDING {
			return nil
		}
		ended = true
		return call(func() C.bp_status { return st })
	})
	return ended, err
}

// Stop stops the job and aborts its open uploads; it returns at once.
// Stopping twice, or an ended job, is harmless.
func (j *Job) Stop() error {
	return j.with(func(p *C.bp_job) error {
		return call(func() C.bp_status { return C.bp_job_stop(p) })
	})
}

// Pause stops the job but keeps its uploads for Resume; it needs a journal.
func (j *Job) Pause() error {
	return j.with(func(p *C.bp_job) error {
		return call(func() C.bp_status { return C.bp_job_pause(p) })
	})
}

// Len is the number of files in the job.
func (j *Job) Len() int {
	n := 0
	_ = j.with(func(p *C.bp_job) error {
		n = int(C.bp_job_file_count(p))
		return nil
	})
	return n
}

// File is the report of file i (batch order).
func (j *Job) File(i int) (FileReport, error) {
	var r C.bp_file_report
	r.struct_size = C.sizeof_bp_file_report
	var out FileReport
	err := j.with(func(p *C.bp_job) error {
		if err := call(func() C.bp_status { return C.bp_job_file(p, C.size_t(i), &r) }); err != nil {
			return err
		}
		// Copy while the job is alive: the strings point into it
		// (C.GoString of NULL is "").
		out = FileReport{
			Path:         C.GoString(r.path),
			Key:          C.GoString(r.key),
			Size:         uint64(r.size),
			BytesDone:    uint64(r.bytes_done),
			AvgSpeedBps:  float64(r.avg_speed_bps),
			PeakSpeedBps: float64(r.peak_speed_bps),
			State:        FileState(r.state),
			ETag:         C.GoString(r.etag),
			Err:          Status(r.error),
			UploadID:     C.GoString(r.upload_id),
			Verified:     Verified(r.verified),
		}
		return nil
	})
	return out, err
}

// Files is every file's report, in batch order.
func (j *Job) Files() ([]FileReport, error) {
	n := j.Len()
	out := make([]FileReport, 0, n)
	for i := 0; i < n; i++ {
		r, err := j.File(i)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Err is nil while the job runs and when it succeeded; otherwise an *Error
// with the job's status and its first fatal error's message (HTTP status, S3
// code, request id), or the stop reason.
func (j *Job) Err() error {
	p, err := j.Poll()
	if err != nil {
		return err
	}
	if p.Err == OK {
		return nil
	}
	var msg string
	_ = j.with(func(h *C.bp_job) error {
		msg = copyMessage(func(buf *C.char, n C.size_t, w *C.size_t) C.bp_status {
			return C.bp_job_last_error(h, buf, n, w)
		})
		return nil
	})
	return &Error{Status: p.Err, Message: msg}
}

// Close frees the job; a job still running is stopped first, and Close
// waits until it has ended. Closing twice is harmless.
func (j *Job) Close() {
	_ = j.Stop() // outside the write lock, so a goroutine in Wait gets to return
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.p != nil {
		C.bp_job_free(j.p)
		j.p = nil
	}
}

// LogLevel is how much the library logs (bp_log_level).
type LogLevel uint32

// Log levels; each includes the ones before it.
const (
	LogOff   LogLevel = C.BP_LOG_OFF
	LogError LogLevel = C.BP_LOG_ERROR
	LogWarn  LogLevel = C.BP_LOG_WARN
	LogInfo  LogLevel = C.BP_LOG_INFO
	LogDebug LogLevel = C.BP_LOG_DEBUG
	LogTrace LogLevel = C.BP_LOG_TRACE
)

func (l LogLevel) String() string {
	names := [...]string{"off", "error", "warn", "info", "debug", "trace"}
	if int(l) >= len(names) {
		return fmt.Sprintf("LogLevel(%d)", uint32(l))
	}
	return names[l]
}

// SetLogLevel sets how much the library logs. The first call installs the
// library's in-memory log (the last 1000 records), which DrainLog empties.
func SetLogLevel(level LogLevel) error {
	return call(func() C.bp_status { return C.bp_set_log_level(C.uint32_t(level)) })
}

// DrainLog hands every log record waiting to f, oldest first, as its
// level and "target: message", and returns how many. It never blocks and
// runs f on the calling goroutine: call it from your own loop (the library
// has no callbacks, so no record ever arrives on a library thread). For
// log/slog (Go 1.21+): DrainLog(func(l LogLevel, m string) { logger.Log(ctx, slogLevel(l), m) }).
func DrainLog(f func(level LogLevel, message string)) int {
	// The longest record (4096 bytes) and its NUL fit; C writes into C
	// memory, copied out before the next call.
	const size = 4096 + 1
	buf := (*C.char)(C.malloc(size))
	defer C.free(unsafe.Pointer(buf))
	var level C.uint32_t
	var n C.size_t
	count := 0
	for C.bp_log_next(&level, buf, size, &n) == C.BP_OK {
		f(LogLevel(level), C.GoString(buf))
		count++
	}
	return count
}
