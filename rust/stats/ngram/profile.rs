//! Lower orders of an entropy profile from the top order's counts:
//! marginalising the last token, merging sparse counts, densifying.

use super::codes::code_space;
use super::sparse::reduce_sorted;
use super::table::{use_dense, NgramCounts, Table};
use crate::alloc::zeros;
use crate::error::Result;
use crate::tokens::InToken;
use rayon::prelude::*;

/// Counts of (n-1)-grams from counts of n-grams (n >= 2): sum over the last
/// token, then add the one (n-1)-gram window per row that no n-gram window
/// starts at (the last one of each row).
pub(super) fn marginalize<T: InToken>(c: NgramCounts, tokens: &[T], len: usize) -> NgramCounts {
    let v = c.vocab;
    let n = c.n - 1;
    let rows = tokens.len() / len;
    // Code of the last (n-1)-window of row i.
    let tail = |i: usize| tokens[i * len + len - n..(i + 1) * len].iter().fold(0u64, |a, x| a * v + x.index());
    let table = match c.table {
        Table::Dense(t) => {
            let mut out: Vec<u64> = t.par_chunks(v as usize).map(|r| r.iter().sum()).collect();
            for i in 0..rows {
                out[tail(i) as usize] += 1;
            }
            Table::Dense(out)
        }
        Table::Sparse { codes, counts } => {
            let mut tails: Vec<u64> = (0..rows).into_par_iter().map(tail).collect();
            tails.par_sort_unstable();
            let (tk, tw) = reduce_sorted(tails.len(), |i| tails[i], |_| 1);
            let (mk, mw) = reduce_sorted(codes.len(), |i| codes[i] / v, |i| counts[i]);
            drop((codes, counts));
            let (codes, counts) = merge_add(mk, mw, &tk, &tw);
            Table::Sparse { codes, counts }
        }
    };
    NgramCounts { n, vocab: v, total: c.total + rows as u64, table }
}

/// Adds the sorted sparse counts (bk, bw) into the sorted (ak, aw), in linear
/// time: in place when every key of b is already in a (the common case),
/// else by a merge into new vectors.
pub(super) fn merge_add(mut ak: Vec<u64>, mut aw: Vec<u64>, bk: &[u64], bw: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut pos = Vec::with_capacity(bk.len());
    let mut i = 0;
    for k in bk {
        while i < ak.len() && ak[i] < *k {
            i += 1;
        }
        if i < ak.len() && ak[i] == *k {
            pos.push(i);
        } else {
            break;
        }
    }
    if pos.len() == bk.len() {
        for (i, w) in pos.into_iter().zip(bw) {
            aw[i] += w;
        }
        return (ak, aw);
    }
    let (mut ck, mut cw) = (Vec::with_capacity(ak.len() + bk.len()), Vec::with_capacity(ak.len() + bk.len()));
    let (mut i, mut j) = (0, 0);
    while i < ak.len() || j < bk.len() {
        if j == bk.len() || (i < ak.len() && ak[i] < bk[j]) {
            ck.push(ak[i]);
            cw.push(aw[i]);
            i += 1;
        } else if i == ak.len() || bk[j] < ak[i] {
            ck.push(bk[j]);
            cw.push(bw[j]);
            j += 1;
        } else {
            ck.push(ak[i]);
            cw.push(aw[i] + bw[j]);
            i += 1;
            j += 1;
        }
    }
    ak.clear();
    aw.clear();
    (ck, cw)
}

/// Sparse counts turned dense once V^n is small enough for a dense table
/// (so that lower orders of a profile marginalise cheaply).
pub(super) fn densify(c: NgramCounts, max_dense: u64) -> Result<NgramCounts> {
    let entries = code_space(c.vocab, c.n, "max_order")?;
    match c.table {
        Table::Sparse { codes, counts } if use_dense(entries, c.n, max_dense) => {
            let mut t: Vec<u64> = zeros(entries as usize, "the dense n-gram table")?;
            for (k, w) in codes.iter().zip(&counts) {
                t[*k as usize] = *w;
            }
            Ok(NgramCounts { table: Table::Dense(t), ..c })
        }
        table => Ok(NgramCounts { table, ..c }),
    }
}
