//! Merging concurrent callers' items into one run of a model.
//!
//! Every task of a stage that uses a model (the object and product detectors, the OCR
//! recognizer of several videos, the face networks of age and eye tracking) calls
//! [`LoadedModel::infer`] from its own blocking thread. The first caller that finds the model
//! idle becomes the leader: it takes every queued request with the same item shape (up to
//! the model's largest batch), runs them as one batch, hands each caller its slice of the
//! outputs, and passes leadership on when its own request is done. Nothing waits for more
//! work to arrive: requests are merged only when they queue up behind a busy model, which is
//! exactly when merging pays.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::error::ModelError;
use crate::runtime::{LoadedModel, Output};

#[derive(Default)]
pub(crate) struct Batcher {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Arc<Request>>,
    leading: bool,
}

struct Request {
    item: Vec<i64>,
    n: usize,
    data: Vec<f32>,
    result: Mutex<Option<Result<Vec<Output>, ModelError>>>,
}

impl Request {
    fn take(&self) -> Option<Result<Vec<Output>, ModelError>> {
        self.result.lock().expect("request poisoned").take()
    }
}

impl Batcher {
    pub(crate) fn submit(
        &self,
        model: &LoadedModel,
        item: &[i64],
        n: usize,
        data: &[f32],
    ) -> Result<Vec<Output>, ModelError> {
        let mut state = self.state.lock().expect("batcher poisoned");
        // Alone on an idle model: run straight from the caller's buffer, no copy.
        if !state.leading && state.queue.is_empty() {
            state.leading = true;
            drop(state);
            let result = model.run_items(item, n, data);
            let mut state = self.state.lock().expect("batcher poisoned");
            state.leading = false;
            drop(state);
            self.wake.notify_all();
            return result;
        }
        let me = Arc::new(Request {
            item: item.to_vec(),
            n,
            data: data.to_vec(),
            result: Mutex::new(None),
        });
        state.queue.push_back(me.clone());
        loop {
            if let Some(result) = me.take() {
                return result;
            }
            if !state.leading {
                break;
            }
            state = self.wake.wait(state).expect("batcher poisoned");
        }
        // Leader until our own request is answered.
        state.leading = true;
        loop {
            let batch = take_batch(&mut state.queue, model.spec.largest_batch());
            drop(state);
            run_batch(model, &batch);
            state = self.state.lock().expect("batcher poisoned");
            self.wake.notify_all();
            if let Some(result) = me.take() {
                state.leading = false;
                drop(state);
                self.wake.notify_all();
                return result;
            }
        }
    }
}

/// The oldest request and every later one of the same item shape, while they fit the
/// largest batch (the oldest is always taken whole; `run_items` splits it).
fn take_batch(queue: &mut VecDeque<Arc<Request>>, max: usize) -> Vec<Arc<Request>> {
    let Some(first) = queue.pop_front() else {
        return Vec::new();
    };
    let mut total = first.n;
    let mut batch = vec![first];
    let mut i = 0;
    while i < queue.len() {
        if queue[i].item == batch[0].item && total + queue[i].n <= max {
            total += queue[i].n;
            batch.push(queue.remove(i).expect("index in range"));
        } else {
            i += 1;
        }
    }
    batch
}

fn run_batch(model: &LoadedModel, batch: &[Arc<Request>]) {
    let Some(first) = batch.first() else {
        return;
    };
    let result = if batch.len() == 1 {
        model.run_items(&first.item, first.n, &first.data)
    } else {
        model.note_merged();
        let n: usize = batch.iter().map(|r| r.n).sum();
        let mut data = Vec::with_capacity(batch.iter().map(|r| r.data.len()).sum());
        for r in batch {
            data.extend_from_slice(&r.data);
        }
        model.run_items(&first.item, n, &data)
    };
    match result {
        Ok(outputs) if batch.len() == 1 => {
            *first.result.lock().expect("request poisoned") = Some(Ok(outputs));
        }
        Ok(outputs) => {
            let mut offset = 0;
            for r in batch {
                let part = outputs
                    .iter()
                    .map(|o| {
                        let len = o.item_len();
                        let mut shape = o.shape.clone();
                        shape[0] = r.n as i64;
                        Output {
                            shape,
                            data: o.data[offset * len..(offset + r.n) * len].to_vec(),
                        }
                    })
                    .collect();
                offset += r.n;
                *r.result.lock().expect("request poisoned") = Some(Ok(part));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let class_oom = matches!(e, ModelError::OutOfMemory { .. });
            for r in batch {
                let err = if class_oom {
                    ModelError::OutOfMemory {
                        model: model.name(),
                        reason: text.clone(),
                    }
                } else {
                    ModelError::Inference {
                        model: model.name(),
                        reason: text.clone(),
                    }
                };
                *r.result.lock().expect("request poisoned") = Some(Err(err));
            }
        }
    }
}
