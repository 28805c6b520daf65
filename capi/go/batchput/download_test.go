package batchput

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// finish waits for job and fails the test unless it succeeded.
func finish(t *testing.T, job *Job) {
	t.Helper()
	if _, err := job.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := job.Err(); err != nil {
		t.Fatal(err)
	}
}

func sameBytes(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(want)
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: %d bytes, not those of %s (%d bytes)", got, len(a), want, len(b))
	}
}

func TestDownloadAndDownloadPrefix(t *testing.T) {
	// An empty object, a single-part one and a multipart one (two parts).
	files := makeFiles(t, "download", 0, 3000, 6*mib+3)
	up, err := NewUploader(server(t, map[string]string{"part_size": "5MiB", "multipart_threshold": "5MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	finish(t, job)

	// A batch of (destination, key) pairs.
	dest := filepath.Join(filepath.Dir(files[0].Path), "..", "download-batch")
	var pairs []File
	for i, f := range files {
		pairs = append(pairs, File{Path: filepath.Join(dest, "sub", filepath.Base(f.Path)+string(rune('a'+i))), Key: f.Key})
	}
	if err := os.MkdirAll(filepath.Join(dest, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	down, err := up.Download(pairs)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	finish(t, down)
	reports, err := down.Files()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reports {
		sameBytes(t, pairs[i].Path, files[i].Path)
		if r.State != FileCompleted || r.Path != pairs[i].Path || r.Key != files[i].Key {
			t.Fatalf("report %d: %+v", i, r)
		}
	}
	if reports[1].Verified != VerifiedMD5 || reports[1].Verified.String() != "md5" {
		t.Fatalf("the single-part object was checked by %v", reports[1].Verified)
	}
	if v := reports[2].Verified; v != VerifiedMultipartETag {
		t.Fatalf("the multipart object was checked by %v", v)
	}

	// Every object under a prefix, below a directory, with a journal.
	below := filepath.Join(dest, "..", "download-prefix")
	journal := filepath.Join(dest, "..", "download.journal")
	all, err := up.DownloadPrefix("go/download/", below, journal)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	finish(t, all)
	if all.Len() != len(files) {
		t.Fatalf("%d files downloaded, want %d", all.Len(), len(files))
	}
	for _, f := range files {
		sameBytes(t, filepath.Join(below, filepath.Base(f.Path)), f.Path)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the journal: %v", err)
	}
	// A finished download's journal resumes to success at once.
	again, err := up.Resume(journal)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	finish(t, again)

	_, err = up.DownloadPrefix("go/nothing-here/", below, "")
	wantError(t, err, InvalidInput, "go/nothing-here/")
	_, err = up.Download([]File{{Path: below, Key: files[1].Key}})
	wantError(t, err, InvalidInput, below)
}
