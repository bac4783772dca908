//! nft's "did you mean …?" suggestions for names that do not exist (`No such file or directory; did
//! you mean set ‘s’ in table ip ‘t’?`), computed the way nft 1.0.6 computes them, quirks included:
//!
//! - its edit distance (Wagner's string-to-string correction) indexes the characters from 1, so it
//!   compares each string's second character onwards and the terminating NUL, and its table is
//!   `len_b` wide where it needs `len_b + 1`, so cells overlap. The result is not the textbook
//!   distance (`to` is 1 away from `q`), and nft's suggestions follow it;
//! - a candidate is kept if its distance is within a threshold of about a third of the longer
//!   name, names of at most one character on both sides are never compared, and the first candidate
//!   with the smallest distance wins;
//! - the lookups search every table of every family; objects of any kind (a counter's name can
//!   suggest a quota); exact matches are not special (nft looks only when the exact name failed).

use crate::ast::{Family, Ruleset, Table};

/// nft's `string_distance` (misspell.c), bug for bug.
fn distance(a: &str, b: &str) -> u32 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (la, lb) = (a.len(), b.len());
    // C strings: index `len` is the terminating NUL
    let ca = |i: usize| a.get(i).copied().unwrap_or(0);
    let cb = |j: usize| b.get(j).copied().unwrap_or(0);
    let mut d = vec![0u32; (la + 1) * (lb + 1)];
    let at = |i: usize, j: usize| i * lb + j;
    for i in 0..=la {
        d[at(i, 0)] = i as u32;
    }
    for j in 0..=lb {
        d[at(0, j)] = j as u32;
    }
    for i in 1..=la {
        for j in 1..=lb {
            let sub = u32::from(ca(i) != cb(j));
            let del = d[at(i - 1, j)] + 1;
            let ins = d[at(i, j - 1)] + 1;
            let tr = d[at(i - 1, j - 1)] + sub;
            d[at(i, j)] = del.min(ins).min(tr);
            if i > 1 && j > 1 && ca(i) == cb(j - 1) && ca(i - 1) == cb(j) {
                d[at(i, j)] = d[at(i, j)].min(d[at(i - 2, j - 2)] + sub);
            }
        }
    }
    d[at(la, lb)]
}

/// nft's `string_misspell_state`: the best candidate so far.
struct Best<T> {
    min: u32,
    found: Option<T>,
}

impl<T> Best<T> {
    fn new() -> Self {
        Best {
            min: u32::MAX,
            found: None,
        }
    }
    /// nft's `string_misspell_update(candidate, wanted)`.
    fn update(&mut self, candidate: &str, wanted: &str, obj: T) {
        let (la, lb) = (candidate.len() as u32, wanted.len() as u32);
        let (max, min) = (la.max(lb), la.min(lb));
        if max <= 1 {
            return;
        }
        let threshold = if max - min <= 1 {
            max.div_ceil(3).max(1)
        } else {
            (max + 2).div_ceil(3)
        };
        let d = distance(candidate, wanted);
        if d <= threshold && d < self.min {
            self.min = d;
            self.found = Some(obj);
        }
    }
}

/// A table whose name is close to `name` (any family).
pub fn table<'r>(rs: &'r Ruleset, name: &str) -> Option<&'r Table> {
    let mut best = Best::new();
    for t in &rs.tables {
        best.update(&t.name, name, t);
    }
    best.found
}

/// What a fuzzy lookup found: the table it is in and its name (and, for sets, whether it is a map).
pub struct Found<'r> {
    pub table: &'r Table,
    pub name: &'r str,
    pub is_map: bool,
}

fn search<'r, I>(rs: &'r Ruleset, name: &str, items: impl Fn(&'r Table) -> I) -> Option<Found<'r>>
where
    I: Iterator<Item = (&'r str, bool)>,
{
    let mut best = Best::new();
    for t in &rs.tables {
        for (n, is_map) in items(t) {
            best.update(n, name, (t, n, is_map));
        }
    }
    best.found.map(|(table, name, is_map)| Found {
        table,
        name,
        is_map,
    })
}

/// The kinds of names nft looks up fuzzily.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum What {
    Chain,
    Set,
    Obj,
    Flowtable,
}

/// The chain, set, object or flowtable whose name is closest to `name`, in any table.
pub fn lookup<'r>(rs: &'r Ruleset, what: What, name: &str) -> Option<Found<'r>> {
    match what {
        What::Chain => search(rs, name, |t| t.chains.iter().map(|c| (&*c.name, false))),
        What::Set => search(rs, name, |t| t.sets.iter().map(|s| (&*s.name, s.is_map))),
        What::Obj => search(rs, name, |t| t.objs.iter().map(|o| (&*o.name, false))),
        What::Flowtable => search(rs, name, |t| t.flowtables.iter().map(|f| (&*f.name, false))),
    }
}

/// The message nft gives when `found` is suggested for a missing `what`.
pub fn suggestion(what: What, found: &Found) -> String {
    let kind = match what {
        What::Chain => "chain",
        What::Set if found.is_map => "map",
        What::Set => "set",
        What::Obj => "obj",
        What::Flowtable => "flowtable",
    };
    format!(
        "No such file or directory; did you mean {kind} ‘{}’ in table {} ‘{}’?",
        found.name,
        found.table.family.name(),
        found.table.name
    )
}

/// The message nft gives when `table` is suggested for a missing table.
pub fn table_suggestion(table: &Table) -> String {
    format!(
        "No such file or directory; did you mean table ‘{}’ in family {}?",
        table.name,
        table.family.name()
    )
}

/// Whether a table of this family and name exists.
pub fn table_exists(rs: &Ruleset, family: Family, name: &str) -> bool {
    rs.table(family, name).is_some()
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn distance_is_nfts_not_the_textbook_one() {
        // measured against nft 1.0.6's suggestions (`delete counter t q` suggests the object `to`)
        assert_eq!(distance("to", "q"), 1);
        assert_eq!(distance("c", "q"), 0);
        assert_eq!(distance("to", "nope"), 2);
        assert_eq!(distance("c1", "c1"), 0);
        assert_eq!(distance("c2", "c1"), 1);
        assert_eq!(distance("t", "x"), 0);
        assert_eq!(distance("kitten", "sitting"), 2);
    }
}
