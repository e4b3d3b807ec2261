//! Filepaths being stored right now, gateway-wide. Under `skip_existing` a
//! stream claims each filepath before asking Milvus whether it is stored and
//! holds the claim until the row is committed (or fails): a second stream,
//! or a second item of the same stream, carrying that filepath meanwhile
//! finds it claimed and skips it. Claiming before the Milvus check closes
//! the gap where both would find it absent. Across several gateways there
//! is no such lock (see the README).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

/// The claims of one gateway.
#[derive(Clone, Default)]
pub struct Claims {
    held: Arc<Mutex<HashSet<(String, String)>>>,
}

/// One held claim; dropping it releases the filepath.
pub struct Claim {
    claims: Claims,
    key: (String, String),
}

impl Claims {
    /// Claims `filepath` in `collection`, or `None` if someone holds it.
    pub fn try_claim(&self, collection: &str, filepath: &str) -> Option<Claim> {
        let key = (collection.to_string(), filepath.to_string());
        let fresh = self.held.lock().expect("claims lock").insert(key.clone());
        fresh.then(|| Claim {
            claims: self.clone(),
            key,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims
            .held
            .lock()
            .expect("claims lock")
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filepath_has_one_holder_until_released() {
        let c = Claims::default();
        let held = c.try_claim("a", "x.jpg").expect("free");
        assert!(c.try_claim("a", "x.jpg").is_none());
        assert!(c.try_claim("b", "x.jpg").is_some(), "collections apart");
        drop(held);
        assert!(c.try_claim("a", "x.jpg").is_some());
    }
}
