package batchput

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

func TestListDeletePrefixAndPresign(t *testing.T) {
	files := makeFiles(t, "objects", 10, 2000, 0)
	up, err := NewUploader(server(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	job, err := up.Upload(files)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	if _, err := job.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := job.Err(); err != nil {
		t.Fatal(err)
	}
	listed, err := up.List("go/objects/")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 || listed[1].Key != files[1].Key || listed[1].Size != 2000 {
		t.Fatalf("listed %+v", listed)
	}
	if time.Since(listed[0].LastModified) > 10*time.Minute {
		t.Fatalf("last modified %v", listed[0].LastModified)
	}

	url, err := up.Presign("GET", files[1].Key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := os.ReadFile(files[1].Path)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET %s: %d, %d bytes", url, resp.StatusCode, len(body))
	}
	put, err := up.Presign("PUT", "go/objects/presigned.txt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", put, bytes.NewReader([]byte("from Go")))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	_, err = up.Presign("GET", "k", 8*24*time.Hour)
	wantError(t, err, InvalidArgument, "1 second to 7 days")

	n, err := up.DeletePrefix("go/objects/")
	if err != nil || n != 4 {
		t.Fatalf("deleted %d: %v", n, err)
	}
	if left, err := up.List("go/objects/"); err != nil || len(left) != 0 {
		t.Fatalf("left %+v: %v", left, err)
	}
	if Done != 20 || BufferTooSmall != 21 {
		t.Fatal("status numbers changed")
	}
}
