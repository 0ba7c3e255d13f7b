//! Neural-network analyzers: ONNX Runtime sessions, their pre/post-processing, and model-server clients.
//!
//! Layout:
//! - `config`: where the runtime and model files are; the sha256 manifest (`config/models.toml`).
//! - `runtime`: ONNX Runtime loaded from `ORT_DYLIB_PATH`; sessions on TensorRT/CUDA/CPU, each
//!   declared by its pipeline (`ModelSpec`: batch sizes, shapes warmed at load, cuDNN search,
//!   precision); `batch` merges concurrent callers' items into one run.
//! - `shapes`: the fixed spatial buckets frames are resized or padded into.
//! - `registry`: sessions created once per process, kept warm, unloaded when idle or on demand.
//! - `imgproc`: the OpenCV-equivalent image operations the models were trained with.
//! - `ocr`: PP-OCR `text_overlay` (detection, line classification, recognition, frame dedup).
//! - `vad`, `speech`: Silero voice activity; `speech_rate` and `speech_flow` built on it.
//! - `faces`, `age`: MTCNN faces; `age_estimation` per face track and `eye_tracking`.
//! - `nanodet`: the default `object_detection` / `product_detection` (NanoDet-m, COCO-80).
//! - `selfie`: the default `background_segmentation` (MediaPipe person mask).
//! - `facemesh`: `eye_tracking` from MediaPipe's face mesh and iris landmarks.
//! - `yolo`, `segformer`, `emotion`: the operator's YOLOv8, SegFormer and audio-classifier files.
//! - `whisper`: in-process `speech_transcription` (Whisper tiny.en, English only).
//! - `server`: OpenAI-compatible model servers (chat with frames, audio transcription).
//! - `params`, `error`: typed analyzer params; errors that name the file and the fix.
//!
//! Pipelines are blocking functions over `media` types (`Frames`, `Audio`); callers run them on
//! a blocking thread. Only `server` is async.
#![forbid(unsafe_code)]

pub mod age;
mod batch;
pub mod config;
pub mod emotion;
pub mod error;
pub mod facemesh;
pub mod faces;
pub mod imgproc;
pub mod nanodet;
pub mod ocr;
mod par;
pub mod params;
pub mod registry;
pub mod runtime;
pub mod segformer;
pub mod selfie;
pub mod server;
pub mod shapes;
pub mod speech;
pub mod vad;
pub mod whisper;
pub mod yolo;

pub use config::{ModelFile, ModelsConfig, ProviderPreference};
pub use error::{ErrorClass, ModelError};
pub use params::Params;
pub use registry::ModelRegistry;
pub use runtime::{ConvSearch, Input, LoadedModel, ModelSpec, Output, Precision, Provider};
