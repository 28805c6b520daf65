package batchput

// Tests against a real S3 server, named by the environment:
// BATCHPUT_TEST_ENDPOINT, _BUCKET, _ACCESS_KEY, _SECRET_KEY and _WORKDIR.
// `cargo test --test tests ffi::go` starts s3s-fs, runs `go test` and then
// checks from Rust that every file under $BATCHPUT_TEST_WORKDIR/go/success is
// the object go/success/<name> with the same bytes, that nothing under
// go/stop exists, and that no multipart upload is left open.

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const mib = 1 << 20

func server(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	opts := map[string]string{}
	for key, name := range map[string]string{
		"endpoint": "BATCHPUT_TEST_ENDPOINT", "bucket": "BATCHPUT_TEST_BUCKET",
		"access_key": "BATCHPUT_TEST_ACCESS_KEY", "secret_key": "BATCHPUT_TEST_SECRET_KEY",
	} {
		v := os.Getenv(name)
		if v == "" {
			t.Skipf("%s is not set: these tests need an S3 server", name)
		}
		opts[key] = v
	}
	for k, v := range extra {
		opts[k] = v
	}
	return opts
}

// makeFiles writes files of the given sizes under $BATCHPUT_TEST_WORKDIR/go/name.
func makeFiles(t *testing.T, name string, sizes ...int) []File {
	t.Helper()
	root := os.Getenv("BATCHPUT_TEST_WORKDIR")
	if root == "" {
		t.Skip("BATCHPUT_TEST_WORKDIR is not set")
	}
	dir := filepath.Join(root, "go", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []File
	for i, size := range sizes {
		block := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", name, i)))
		data := make([]byte, size)
		for j := range data {
			data[j] = block[j%len(block)]
		}
		path := filepath.Join(dir, fmt.Sprintf("file-%d.bin", i))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: path, Key: "go/" + name + "/" + filepath.Base(path)})
	}
	return files
}

func wantError(t *testing.T, err error, status Status, words ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want a %v error, got %v", status, err)
	}
	if e.Status != status {
		t.Fatalf("status %v, want %v: %v", e.Status, status, e)
	}
	for _, w := range words {
		if !strings.Contains(e.Message, w) {
			t.Fatalf("%q not in %q", w, e.Message)
		}
	}
}

func TestVersionMatchesHeader(t *testing.T) {
	if VersionNumber() != HeaderVersionNumber {
		t.Fatalf("library %d, header %d", VersionNumber(), HeaderVersionNumber)
	}
	var major, minor, patch uint32
	if _, err := fmt.Sscanf(Version(), "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatal(err)
	}
	if VersionNumber() != major*1000000+minor*1000+patch {
		t.Fatalf("%s packs to %d", Version(), VersionNumber())
	}
}

func TestUploadSucceeds(t *testing.T) {
	files := makeFiles(t, "success", 0, 1000, 6*mib+7)
	up, err := NewUploader(server(t, map[string]string{"part_size": "5MiB", "multipart_threshold": "5MiB", "workers": "4"}))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	for {
		done, err := job.Wait(200 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if p, _ := job.Poll(); p.State.Ended() {
			// It ended after Wait looked: Wait must now say so at once.
			if done, err := job.Wait(0); err != nil || !done {
				t.Fatalf("Poll says %v, Wait(0) says done=%v err=%v", p.State, done, err)
			}
			break
		}
	}
	if err := job.Err(); err != nil {
		t.Fatal(err)
	}
	p, err := job.Poll()
	if err != nil {
		t.Fatal(err)
	}
	if p.State != JobSucceeded || p.FilesDone != 3 || p.BytesDone != 6*mib+1007 || p.PartsDone != 4 {
		t.Fatalf("%+v", p)
	}
	// integrity=auto (the default) on s3s-fs, which takes any CRC32C on a part.
	if p.IntegrityUsed != IntegrityETagMD5 || p.IntegrityUsed.String() != "etag-md5" {
		t.Fatalf("integrity used: %v", p.IntegrityUsed)
	}
	reports, err := job.Files()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reports {
		if r.Path != files[i].Path || r.Key != files[i].Key || r.State != FileCompleted || r.BytesDone != r.Size || r.UploadID != "" {
			t.Fatalf("report %d: %+v", i, r)
		}
	}
	data, _ := os.ReadFile(files[1].Path)
	sum := md5.Sum(data)
	if reports[1].ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("etag %q, md5 %x", reports[1].ETag, sum)
	}
	if !strings.HasSuffix(reports[2].ETag, "-2") {
		t.Fatalf("multipart etag %q", reports[2].ETag)
	}
	if again, _ := job.Poll(); again != p {
		t.Fatalf("poll after the end changed: %+v then %+v", p, again)
	}
}

func TestStopFromAnotherGoroutine(t *testing.T) {
	// The last one PutObject, more than the rate limit lets through
	// before the stop: in flight like the others then, whatever the order.
	files := makeFiles(t, "stop", 12*mib, 2*mib, 900*1024)
	up, err := NewUploader(server(t, map[string]string{
		"part_size": "5MiB", "multipart_threshold": "1MiB", "rate_limit": "1MiB", "workers": "4",
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	stopped := make(chan error)
	go func() {
		time.Sleep(300 * time.Millisecond)
		stopped <- job.Stop()
	}()
	start := time.Now()
	done, err := job.Wait(60 * time.Second)
	if err != nil || !done {
		t.Fatalf("wait: %v %v", done, err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("stop took %v", time.Since(start))
	}
	if err := job.Stop(); err != nil { // twice: harmless
		t.Fatal(err)
	}
	wantError(t, job.Err(), Stopped, "stopped")
	reports, _ := job.Files()
	aborted := 0
	for _, r := range reports {
		switch r.State {
		case FileAborted:
			aborted++
		case FileNotStarted:
		default:
			t.Fatalf("%s: %v", r.Key, r.State)
		}
	}
	if aborted == 0 {
		t.Fatalf("no upload was aborted: %+v", reports)
	}
}

func TestBadKey(t *testing.T) {
	files := makeFiles(t, "badkey", 10)
	up, err := NewUploader(server(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	_, err = up.Upload([]File{{Path: files[0].Path, Key: ""}})
	wantError(t, err, InvalidArgument, "bp_batch_add", "'key'", "empty")
	_, err = up.Upload([]File{{Path: files[0].Path, Key: "bad-\xff"}})
	wantError(t, err, InvalidUTF8, "'key'")
	_, err = up.Upload([]File{{Path: files[0].Path, Key: "a/../b"}})
	wantError(t, err, InvalidArgument, "'key'", "..")
	_, err = up.Upload(nil)
	wantError(t, err, InvalidInput, "empty")
	_, err = up.Upload([]File{{Path: files[0].Path + ".missing", Key: "k"}})
	wantError(t, err, LocalIO, "no such file")
}

func TestBadOption(t *testing.T) {
	_, err := NewUploader(server(t, map[string]string{"colour": "blue"}))
	wantError(t, err, InvalidArgument, "unknown option 'colour'")
	_, err = NewUploader(server(t, map[string]string{"part_size": "12 apples"}))
	wantError(t, err, InvalidArgument, "'part_size'", "12 apples")
	for _, v := range []string{"0", "-1", "1e99"} {
		_, err = NewUploader(server(t, map[string]string{"workers": v}))
		wantError(t, err, InvalidArgument, "'workers'", v)
	}
	_, err = NewUploader(map[string]string{"endpoint": "http://127.0.0.1:1"})
	wantError(t, err, InvalidArgument, "'bucket'", "not set")
}

func TestClosedHandlesAreMisuse(t *testing.T) {
	files := makeFiles(t, "closed", 10)
	up, err := NewUploader(server(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, job.Pause(), Misuse, "journal")
	job.Close()
	job.Close()
	_, err = job.Poll()
	wantError(t, err, Misuse, "closed")
	up.Close()
	_, err = up.Upload(files)
	wantError(t, err, Misuse, "closed")
}

func TestNewStatesKeepTheirNumbers(t *testing.T) {
	if FileAbortFailed != 6 || FileUnknown != 7 || Empty != 18 || LoggerInUse != 19 || LogTrace != 5 ||
		IntegrityUnknown != 0 || IntegrityCRC32C != 3 {
		t.Fatal("a value of the C ABI changed")
	}
	if FileAbortFailed.String() != "abort failed" || Empty.String() != "nothing to read (not an error)" {
		t.Fatalf("%q %q", FileAbortFailed, Empty)
	}
	wantError(t, SetLogLevel(6), InvalidArgument, "'level' is 6")
}

func TestDrainLogDeliversLibraryRecords(t *testing.T) {
	files := makeFiles(t, "log", 10)
	if err := SetLogLevel(LogDebug); err != nil {
		t.Fatal(err)
	}
	defer SetLogLevel(LogOff)
	up, err := NewUploader(server(t, map[string]string{"secret_key": "wrong", "retries": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	if done, err := job.Wait(60 * time.Second); !done || err != nil {
		t.Fatalf("wait: %v %v", done, err)
	}
	var failed []string
	n := DrainLog(func(level LogLevel, msg string) {
		if strings.Contains(msg, "job failed") && level == LogError {
			failed = append(failed, msg)
		}
	})
	if n == 0 || len(failed) == 0 || !strings.Contains(failed[0], files[0].Key) {
		t.Fatalf("%d records, failures %q", n, failed)
	}
	if again := DrainLog(func(LogLevel, string) {}); again != 0 {
		t.Fatalf("%d records after draining", again)
	}
}

// answerEarly is an S3 server at its rudest: it reads a request's head,
// refuses it (403 AccessDenied, Connection: close) and closes the socket
// without reading the body, so the kernel resets the connection while the
// client is still sending.
func answerEarly(t *testing.T) (endpoint string, requests *int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests = new(int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				atomic.AddInt32(requests, 1)
				body := "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>" +
					"<Message>Access Denied</Message><RequestId>go-early</RequestId></Error>"
				fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"+
					"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
				c.(*net.TCPConn).CloseWrite()
			}(c)
		}
	}()
	return "http://" + ln.Addr().String(), requests
}

// TestNoSIGPIPEWhenTheServerAnswersEarly uploads 64 MiB in every integrity
// mode to a server that refuses it and resets the connection mid-body.
//
// Why this test can fail: the library's workers are threads Go did not
// start. The os/signal docs ("Go programs that use cgo or SWIG") say that
// when Go's handler runs on a non-Go thread not running Go code, it
// removes itself, unblocks the signal and raises it again, to reach the
// non-Go handler or the default action. SIGPIPE's default action ends the
// process, so a SIGPIPE raised in a worker (sendfile on a reset socket)
// kills this test binary ("signal: broken pipe"), as it would a C host.
// That is why nothing here calls signal.Notify for SIGPIPE (it would
// swallow the signal) and why signal.Reset(syscall.SIGPIPE) would prove
// nothing: Reset only governs delivery to Go's channels, and Go's own
// threads never see this signal. Passing means the library never let one
// escape.
func TestNoSIGPIPEWhenTheServerAnswersEarly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.bin")
	data := make([]byte, 64*mib)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	endpoint, requests := answerEarly(t)
	for _, mode := range []string{"none", "crc32c", "content-md5", "etag-md5"} {
		up, err := NewUploader(map[string]string{
			"endpoint": endpoint, "bucket": "sigpipe-test", "access_key": "AK", "secret_key": "SK",
			"integrity": mode, "multipart_threshold": "128MiB", "retries": "1",
		})
		if err != nil {
			t.Fatal(err)
		}
		job, err := up.Upload([]File{{Path: path, Key: "big-" + mode}})
		if err != nil {
			t.Fatal(err)
		}
		if done, err := job.Wait(60 * time.Second); !done || err != nil {
			t.Fatalf("%s: wait: %v %v", mode, done, err)
		}
		wantError(t, job.Err(), Server, "AccessDenied")
		job.Close()
		up.Close()
	}
	if n := atomic.LoadInt32(requests); n < 4 {
		t.Fatalf("the server saw %d requests", n)
	}
}
