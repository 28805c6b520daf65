//! The upload operations: PutObject, and a multipart upload's create,
//! parts, completion and abort (with CRC32C declared and sent where the
//! integrity mode asks for it); CreateBucket for tests and the quickstart.

use super::{
    add_checksum, unquote, unquote_str, xml, Body, CompletedPart, Request, SentChecksum, Store,
};
use crate::error::Result;

impl Store {
    /// Uploads a whole object in one request. Returns its ETag.
    pub fn put_object(
        &self,
        key: &str,
        body: Body<'_>,
        checksum: SentChecksum,
        endpoint_hint: usize,
    ) -> Result<String> {
        let mut headers = self.inner.object_headers.clone();
        add_checksum(&mut headers, checksum);
        let reply = self.call_with_meta(Request {
            operation: "PutObject",
            method: "PUT",
            key: Some(key),
            query: &[],
            headers,
            body,
            endpoint_hint,
        })?;
        Ok(reply.etag.map(unquote).unwrap_or_default())
    }

    /// Starts a multipart upload. Returns its upload id. With
    /// `integrity=crc32c` in the configuration it declares the CRC32C
    /// algorithm (see [`create_multipart_upload_with`](Store::create_multipart_upload_with)).
    pub fn create_multipart_upload(&self, key: &str, endpoint_hint: usize) -> Result<String> {
        self.create_multipart_upload_with(key, self.inner.crc32c_uploads, endpoint_hint)
    }

    /// Starts a multipart upload, with `x-amz-checksum-algorithm: CRC32C`
    /// when `crc32c`: each part of such an upload then carries
    /// `x-amz-checksum-crc32c`, and its CompleteMultipartUpload names each
    /// part's. Returns its upload id.
    pub fn create_multipart_upload_with(
        &self,
        key: &str,
        crc32c: bool,
        endpoint_hint: usize,
    ) -> Result<String> {
        let mut headers = self.inner.object_headers.clone();
        if crc32c {
            headers.push(("x-amz-checksum-algorithm", "CRC32C".into()));
        }
        let reply = self.call_with_meta(Request {
            operation: "CreateMultipartUpload",
            method: "POST",
            key: Some(key),
            query: &[("uploads", "")],
            headers,
            body: Body::Empty,
            endpoint_hint,
        })?;
        let root = self.parse_body("CreateMultipartUpload", key, &reply.body)?;
        root.text_of("UploadId")
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| self.malformed("CreateMultipartUpload", key, "no UploadId"))
    }

    /// Uploads one part. Returns its ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body<'_>,
        checksum: SentChecksum,
        endpoint_hint: usize,
    ) -> Result<String> {
        let number = part_number.to_string();
        let mut headers = Vec::new();
        add_checksum(&mut headers, checksum);
        let reply = self
            .call(Request {
                operation: "UploadPart",
                method: "PUT",
                key: Some(key),
                query: &[("partNumber", &number), ("uploadId", upload_id)],
                headers,
                body,
                endpoint_hint,
            })
            .map_err(|e| e.with_part(part_number))?;
        Ok(reply.etag.map(unquote).unwrap_or_default())
    }

    /// Completes a multipart upload from its parts, in order. Returns the
    /// object's ETag. A 200 answer that carries an `<Error>` (S3 does that
    /// when it fails after it started answering) is an error.
    pub fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        endpoint_hint: usize,
    ) -> Result<String> {
        let mut xml = String::with_capacity(64 + parts.len() * 96);
        xml.push_str("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        for p in parts {
            xml.push_str("<Part><PartNumber>");
            xml.push_str(&p.number.to_string());
            xml.push_str("</PartNumber><ETag>\"");
            xml.push_str(&xml::escape(&p.etag));
            xml.push_str("\"</ETag>");
            if let Some(crc) = &p.crc32c {
                xml.push_str("<ChecksumCRC32C>");
                xml.push_str(crc);
                xml.push_str("</ChecksumCRC32C>");
            }
            xml.push_str("</Part>");
        }
        xml.push_str("</CompleteMultipartUpload>");
        let reply = self.call(Request {
            operation: "CompleteMultipartUpload",
            method: "POST",
            key: Some(key),
            query: &[("uploadId", upload_id)],
            headers: vec![("content-type", "application/xml".into())],
            body: Body::Bytes(xml.as_bytes()),
            endpoint_hint,
        })?;
        let root = self.parse_body("CompleteMultipartUpload", key, &reply.body)?;
        if root.name == "Error" {
            return Err(self.error_from_xml("CompleteMultipartUpload", key, 200, &root, None));
        }
        Ok(root.text_of("ETag").map(unquote_str).unwrap_or_default())
    }

    /// Aborts a multipart upload.
    pub fn abort_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        endpoint_hint: usize,
    ) -> Result<()> {
        self.call(Request {
            operation: "AbortMultipartUpload",
            method: "DELETE",
            key: Some(key),
            query: &[("uploadId", upload_id)],
            headers: Vec::new(),
            body: Body::Empty,
            endpoint_hint,
        })?;
        Ok(())
    }

    /// Creates the bucket (tests, the quickstart). An existing bucket owned
    /// by the caller is not an error.
    pub fn create_bucket(&self, region: Option<&str>) -> Result<()> {
        let body = match region {
            Some(r) if r != "us-east-1" => format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(r)
            ),
            _ => String::new(),
        };
        match self.call(Request {
            operation: "CreateBucket",
            method: "PUT",
            key: None,
            query: &[],
            headers: Vec::new(),
            body: Body::Bytes(body.as_bytes()),
            endpoint_hint: 0,
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
