//! Connected components of near pairs, held only while they can still
//! grow. The scan reads rows in id order and links each to every neighbour
//! its range search finds, so once the scan has passed a component's
//! highest id, no row still to come can join it: it is finished, sent and
//! forgotten. What stays is the rows of unfinished components, bounded.

use std::collections::{BTreeSet, HashMap, HashSet};

/// One row of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub id: i64,
    pub filepath: String,
    /// The squared L2 distance to its nearest other member.
    pub nearest: f32,
}

/// Why linking failed: a limit the caller's distance broke.
#[derive(Debug, PartialEq, Eq)]
pub enum Overflow {
    /// A group grew past this many members.
    Group(usize),
    /// Unfinished groups held more rows than this.
    Open(usize),
}

struct Node {
    root: i64,
    filepath: String,
    nearest: f32,
}

/// The unfinished components, by root: their members and highest id.
struct Component {
    members: Vec<i64>,
    last: i64,
}

pub struct Groups {
    nodes: HashMap<i64, Node>,
    components: HashMap<i64, Component>,
    /// (highest id, root): which components the scan has passed first.
    by_last: BTreeSet<(i64, i64)>,
    /// Rows of groups already taken out, while there is room for them.
    sent: HashSet<i64>,
    max_group: usize,
    max_open: usize,
    max_sent: usize,
}

impl Groups {
    /// At most `max_group` rows a group, `max_open` rows in unfinished
    /// groups; the rows of `max_sent` finished ones are remembered.
    pub fn new(max_group: usize, max_open: usize, max_sent: usize) -> Self {
        Self {
            nodes: HashMap::new(),
            components: HashMap::new(),
            by_last: BTreeSet::new(),
            sent: HashSet::new(),
            max_group,
            max_open,
            max_sent,
        }
    }

    /// Whether `id` may be in a group already taken out: it was, or the
    /// memory of them is full and it cannot be told.
    pub fn may_be_sent(&self, id: i64) -> bool {
        self.sent.len() >= self.max_sent || self.sent.contains(&id)
    }

    /// Whether `id` belongs to an unfinished group.
    pub fn is_open(&self, id: i64) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Rows held, in all unfinished groups.
    pub fn open_rows(&self) -> usize {
        self.nodes.len()
    }

    /// Records that rows `a` and `b` lie `distance` apart, joining their
    /// groups.
    pub fn link(&mut self, a: (i64, &str), b: (i64, &str), distance: f32) -> Result<(), Overflow> {
        let ra = self.enter(a, distance)?;
        let rb = self.enter(b, distance)?;
        if ra == rb {
            return Ok(());
        }
        let size = |r: &i64| self.components[r].members.len();
        let (keep, gone_root) = if size(&ra) >= size(&rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let gone = self
            .components
            .remove(&gone_root)
            .expect("a root has a component");
        let kept = self
            .components
            .get_mut(&keep)
            .expect("a root has a component");
        self.by_last.remove(&(gone.last, gone_root));
        self.by_last.remove(&(kept.last, keep));
        for m in &gone.members {
            self.nodes.get_mut(m).expect("a member has a node").root = keep;
        }
        kept.members.extend(gone.members);
        kept.last = kept.last.max(gone.last);
        self.by_last.insert((kept.last, keep));
        if kept.members.len() > self.max_group {
            return Err(Overflow::Group(self.max_group));
        }
        Ok(())
    }

    /// The row's root, entering it alone if it is new; its nearest
    /// distance takes `distance` if that is nearer.
    fn enter(&mut self, (id, filepath): (i64, &str), distance: f32) -> Result<i64, Overflow> {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.nearest = node.nearest.min(distance);
            return Ok(node.root);
        }
        if self.nodes.len() >= self.max_open {
            return Err(Overflow::Open(self.max_open));
        }
        self.nodes.insert(
            id,
            Node {
                root: id,
                filepath: filepath.to_string(),
                nearest: distance,
            },
        );
        self.components.insert(
            id,
            Component {
                members: vec![id],
                last: id,
            },
        );
        self.by_last.insert((id, id));
        Ok(id)
    }

    /// Takes out every group whose rows all have ids up to `through`,
    /// lowest highest-id first, each ordered by id.
    pub fn finished(&mut self, through: i64) -> Vec<Vec<Member>> {
        let mut out = Vec::new();
        while let Some(&(last, root)) = self.by_last.first() {
            if last > through {
                break;
            }
            self.by_last.pop_first();
            let mut ids = self
                .components
                .remove(&root)
                .expect("a root has a component")
                .members;
            ids.sort_unstable();
            out.push(
                ids.into_iter()
                    .map(|id| {
                        let n = self.nodes.remove(&id).expect("a member has a node");
                        if self.sent.len() < self.max_sent {
                            self.sent.insert(id);
                        }
                        Member {
                            id,
                            filepath: n.filepath,
                            nearest: n.nearest,
                        }
                    })
                    .collect(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(groups: &[Vec<Member>]) -> Vec<Vec<i64>> {
        groups
            .iter()
            .map(|g| g.iter().map(|m| m.id).collect())
            .collect()
    }

    #[test]
    fn a_chain_of_pairs_is_one_group_finished_once_its_last_id_is_passed() {
        let mut g = Groups::new(10, 100, 100);
        g.link((1, "a"), (5, "e"), 2.0).unwrap();
        g.link((5, "e"), (9, "i"), 3.0).unwrap();
        assert!(g.finished(8).is_empty(), "9 may still gain neighbours");
        let done = g.finished(9);
        assert_eq!(ids(&done), vec![vec![1, 5, 9]]);
        assert_eq!(done[0][1].nearest, 2.0);
        assert_eq!(g.open_rows(), 0);
    }

    #[test]
    fn separate_pairs_stay_separate_groups_in_the_order_they_finish() {
        let mut g = Groups::new(10, 100, 100);
        g.link((3, "c"), (20, "t"), 1.0).unwrap();
        g.link((4, "d"), (6, "f"), 1.0).unwrap();
        assert_eq!(ids(&g.finished(25)), vec![vec![4, 6], vec![3, 20]]);
    }

    #[test]
    fn joining_two_groups_keeps_every_member_once() {
        let mut g = Groups::new(10, 100, 100);
        g.link((1, "a"), (2, "b"), 1.0).unwrap();
        g.link((3, "c"), (4, "d"), 1.0).unwrap();
        g.link((5, "e"), (3, "c"), 1.0).unwrap();
        g.link((2, "b"), (4, "d"), 1.0).unwrap();
        g.link((4, "d"), (1, "a"), 1.0).unwrap();
        assert_eq!(ids(&g.finished(5)), vec![vec![1, 2, 3, 4, 5]]);
    }

    #[test]
    fn rows_of_finished_groups_are_remembered_until_the_memory_is_full() {
        let mut g = Groups::new(10, 100, 2);
        g.link((1, "a"), (2, "b"), 1.0).unwrap();
        g.link((3, "c"), (4, "d"), 1.0).unwrap();
        g.finished(4);
        assert!(g.may_be_sent(1) && g.may_be_sent(2));
        assert!(g.may_be_sent(5), "full: cannot tell");
        let mut g = Groups::new(10, 100, 10);
        g.link((1, "a"), (2, "b"), 1.0).unwrap();
        g.finished(2);
        assert!(!g.may_be_sent(3), "a row never grouped");
    }

    #[test]
    fn a_group_past_its_limit_is_an_overflow() {
        let mut g = Groups::new(3, 100, 100);
        g.link((1, "a"), (2, "b"), 1.0).unwrap();
        g.link((2, "b"), (3, "c"), 1.0).unwrap();
        assert_eq!(g.link((3, "c"), (4, "d"), 1.0), Err(Overflow::Group(3)));
    }

    #[test]
    fn more_open_rows_than_allowed_is_an_overflow() {
        let mut g = Groups::new(10, 3, 100);
        g.link((1, "a"), (2, "b"), 1.0).unwrap();
        assert_eq!(g.link((3, "c"), (4, "d"), 1.0), Err(Overflow::Open(3)));
    }
}
