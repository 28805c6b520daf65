//! What an [`Uploader`] does with what is already stored: list a prefix,
//! delete a prefix (reporting exactly what was and was not deleted), and
//! presign a URL. Thin over the store's ListObjectsV2, DeleteObjects and
//! SigV4 query signing (`store::objects`), which hold the protocol.

use std::time::Duration;

use crate::error::Result;
use crate::store::{DeleteReport, ListedObject};
use crate::Uploader;

impl Uploader {
    /// Every object under `prefix` ("" for the whole bucket), all pages,
    /// keys exactly as stored, in the server's order.
    pub fn list(&self, prefix: &str) -> Result<Vec<ListedObject>> {
        self.store().list_objects(prefix)
    }

    /// Lists `prefix` ("" for the whole bucket), then deletes what it
    /// listed with DeleteObjects, 1,000 keys a request. The report names
    /// every key deleted and every key not deleted with the server's
    /// reason; an object written under the prefix after the listing is
    /// left alone. `Err` when the listing fails (nothing was deleted).
    pub fn delete_prefix(&self, prefix: &str) -> Result<DeleteReport> {
        let keys: Vec<String> = self.list(prefix)?.into_iter().map(|o| o.key).collect();
        self.store().delete_objects(&keys)
    }

    /// A SigV4 presigned URL for `method` ("GET" or "PUT") on `key`, valid
    /// for `expires` (whole seconds, 1 s to 7 days): anyone holding it may
    /// download (GET) or upload (PUT) that one object with a plain HTTP
    /// client until it expires. Nothing is sent to the server.
    pub fn presign(&self, method: &str, key: &str, expires: Duration) -> Result<String> {
        self.store().presign(method, key, expires)
    }
}
