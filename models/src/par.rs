//! CPU work around the models, spread over the cores: a batch's frames are resized, packed
//! and post-processed in parallel, and the next chunk is prepared while the device runs the
//! current one.

use rayon::prelude::*;

/// `f` over every item on the rayon pool, results in item order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    items.par_iter().map(f).collect()
}

/// `f` over every index in `0..n` on the rayon pool, results in index order.
pub(crate) fn map_n<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    (0..n).into_par_iter().map(f).collect()
}

/// Fills `out` (`n` slots of `len` values) in parallel, slot `i` by `f(i, slot)`.
pub(crate) fn fill(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if len == 0 {
        return;
    }
    out.par_chunks_mut(len)
        .enumerate()
        .for_each(|(i, slot)| f(i, slot));
}

/// Like [`fill`], collecting what `f` returns for each slot.
pub(crate) fn fill_map<R: Send>(
    out: &mut [f32],
    len: usize,
    f: impl Fn(usize, &mut [f32]) -> R + Sync + Send,
) -> Vec<R> {
    if len == 0 {
        return Vec::new();
    }
    out.par_chunks_mut(len)
        .enumerate()
        .map(|(i, slot)| f(i, slot))
        .collect()
}

/// For chunks `0..n`: `prepare(k + 1)` runs on another thread while `run(k, prepared)` runs
/// here, so preprocessing hides behind inference. Stops at the first error.
pub(crate) fn pipelined<P: Send, R, E>(
    n: usize,
    prepare: impl Fn(usize) -> P + Sync,
    mut run: impl FnMut(usize, P) -> Result<R, E>,
) -> Result<Vec<R>, E> {
    let mut results = Vec::with_capacity(n);
    if n == 0 {
        return Ok(results);
    }
    let prepare = &prepare;
    std::thread::scope(|scope| {
        let mut next = Some(scope.spawn(move || prepare(0)));
        for k in 0..n {
            let current = next
                .take()
                .map(|h| h.join().expect("preprocessing panicked"))
                .expect("chunk prepared");
            if k + 1 < n {
                next = Some(scope.spawn(move || prepare(k + 1)));
            }
            results.push(run(k, current)?);
        }
        Ok(results)
    })
}
