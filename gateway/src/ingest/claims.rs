//! Filepaths being stored right now, gateway-wide. Under `skip_existing` a
//! stream claims each filepath before asking Milvus whether it is stored and
//! holds the claim until the row is committed (or fails). A second item
//! carrying that filepath meanwhile, from another stream or the same one,
//! does not guess: it waits for the holder's outcome, and is skipped if the
//! row was stored or tries for itself if it was not. (Skipping at once had
//! reported items "already stored" whose holder then failed, so nobody
//! stored them.) Claiming before the Milvus check closes the gap where both
//! would find it absent. Across several gateways there is no such lock (see
//! the README).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

/// How a claim ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The holder's row is in Milvus, under this id.
    Stored(i64),
    /// The holder let go without storing it (its item failed or left).
    Released,
}

type Key = (String, String);
type Told = Arc<watch::Sender<Option<Outcome>>>;

/// The claims of one gateway.
#[derive(Clone, Default)]
pub struct Claims {
    held: Arc<Mutex<HashMap<Key, Told>>>,
}

/// One held claim. Dropping it tells the waiters `Released`, unless
/// [`Claim::stored`] said otherwise.
pub struct Claim {
    claims: Claims,
    key: Key,
    told: Told,
    outcome: Outcome,
}

/// A claim someone else holds: resolves to that holder's outcome.
pub struct Wait(watch::Receiver<Option<Outcome>>);

/// What claiming a filepath gave.
pub enum Claimed {
    Mine(Claim),
    Theirs(Wait),
}

impl Claims {
    /// Claims `filepath` in `space` (a collection, or one tenant's rows of
    /// it: see [`super::item::ItemRules::claim_space`]), or says how to
    /// wait for its holder.
    pub fn claim(&self, space: &str, filepath: &str) -> Claimed {
        let key = (space.to_string(), filepath.to_string());
        let mut held = self.held.lock().expect("claims lock");
        if let Some(holder) = held.get(&key) {
            return Claimed::Theirs(Wait(holder.subscribe()));
        }
        let told = Arc::new(watch::Sender::new(None));
        held.insert(key.clone(), told.clone());
        Claimed::Mine(Claim {
            claims: self.clone(),
            key,
            told,
            outcome: Outcome::Released,
        })
    }
}

impl Claim {
    /// The row is in Milvus as `id`: waiters skip their items.
    pub fn stored(mut self, id: i64) {
        self.outcome = Outcome::Stored(id);
    }

    /// Whether another item waits for this one's outcome.
    pub fn awaited(&self) -> bool {
        self.told.receiver_count() > 0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed and told under the lock, so a waiter either subscribed
        // before (and hears it) or finds the filepath free.
        let mut held = self.claims.held.lock().expect("claims lock");
        held.remove(&self.key);
        self.told.send_replace(Some(self.outcome));
    }
}

impl Wait {
    pub async fn outcome(mut self) -> Outcome {
        loop {
            if let Some(outcome) = *self.0.borrow_and_update() {
                return outcome;
            }
            if self.0.changed().await.is_err() {
                return self.0.borrow().unwrap_or(Outcome::Released);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(c: Claimed) -> Claim {
        match c {
            Claimed::Mine(claim) => claim,
            Claimed::Theirs(_) => panic!("expected a free filepath"),
        }
    }

    fn theirs(c: Claimed) -> Wait {
        match c {
            Claimed::Theirs(wait) => wait,
            Claimed::Mine(_) => panic!("expected a held filepath"),
        }
    }

    #[tokio::test]
    async fn a_waiter_hears_stored_when_the_holder_stored_the_row() {
        let c = Claims::default();
        let held = mine(c.claim("a", "x.jpg"));
        assert!(!held.awaited());
        let wait = theirs(c.claim("a", "x.jpg"));
        assert!(held.awaited());
        mine(c.claim("b", "x.jpg"));
        held.stored(7);
        assert_eq!(wait.outcome().await, Outcome::Stored(7));
        mine(c.claim("a", "x.jpg"));
    }

    #[tokio::test]
    async fn a_waiter_hears_released_when_the_holder_let_go() {
        let c = Claims::default();
        let held = mine(c.claim("a", "x.jpg"));
        let wait = theirs(c.claim("a", "x.jpg"));
        let waiting = tokio::spawn(wait.outcome());
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiting.await.unwrap(), Outcome::Released);
    }
}
