//! Items waiting for another item's claim on their filepath. The items stay
//! here, not inside the futures that wait, so a stream that stops can hand
//! every one of them back as unsettled.

use std::collections::HashMap;

use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};

use super::{
    claims::{Outcome, Wait},
    item::ItemIndex,
};

pub struct Waiting<T> {
    items: HashMap<ItemIndex, T>,
    outcomes: FuturesUnordered<BoxFuture<'static, (ItemIndex, Outcome)>>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            outcomes: FuturesUnordered::new(),
        }
    }
}

impl<T> Waiting<T> {
    pub fn add(&mut self, index: ItemIndex, item: T, wait: Wait) {
        self.items.insert(index, item);
        self.outcomes
            .push(wait.outcome().map(move |o| (index, o)).boxed());
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The next item whose holder is done, with that holder's outcome;
    /// never resolves while none waits.
    pub async fn next(&mut self) -> (T, Outcome) {
        loop {
            let Some((index, outcome)) = self.outcomes.next().await else {
                return std::future::pending().await;
            };
            if let Some(item) = self.items.remove(&index) {
                return (item, outcome);
            }
        }
    }

    /// Every item still waiting, for a stream that stops.
    pub fn drain(&mut self) -> impl Iterator<Item = (ItemIndex, T)> + '_ {
        self.outcomes.clear();
        self.items.drain()
    }
}
