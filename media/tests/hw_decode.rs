//! NVDEC decode (`HwDecode::Cuda`) against real ffmpeg: the same frames as the CPU decoder,
//! and on a host where NVDEC cannot run (no driver, as on CI) the pass falls back to the CPU
//! and turns NVDEC off for the process instead of failing the job.

mod support;

use std::sync::Arc;

use media::{FrameSpec, HwDecode, Media, MediaConfig, hw_decode_disabled};
use support::{config, video};

fn has_nvidia_driver() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
}

#[tokio::test]
async fn nvdec_gives_the_cpu_frames_or_falls_back_to_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, false);
    let cpu_cfg = config(dir.path());
    let hw_cfg = MediaConfig {
        hw_decode: HwDecode::Cuda { device: 0 },
        ..cpu_cfg.clone()
    };
    let specs = [FrameSpec::every_frame(160), FrameSpec::at_fps(2000, 64)];
    let decode = |cfg: MediaConfig| {
        let path = path.clone();
        async move {
            let m = Media::new(path.to_str().unwrap(), Arc::new(cfg));
            let all = specs.to_vec();
            m.plan_frames(Arc::new(move |_| all.clone()));
            let mut out = Vec::new();
            for s in specs {
                out.push(m.frames(s).await.expect("frames"));
            }
            (out, m.decode_passes())
        }
    };
    let (cpu, _) = decode(cpu_cfg).await;
    let (hw, passes) = decode(hw_cfg).await;
    for (c, h) in cpu.iter().zip(&hw) {
        assert_eq!((c.width, c.height, c.len()), (h.width, h.height, h.len()));
        assert_eq!(c.times, h.times);
    }
    assert_eq!(
        passes, 1,
        "one planned pass per job, whichever decoder ran it"
    );
    if has_nvidia_driver() {
        assert!(
            !hw_decode_disabled(),
            "NVDEC failed on a host with a driver"
        );
    } else {
        assert!(
            hw_decode_disabled(),
            "without a driver the NVDEC pass must have failed and been turned off"
        );
        // Once off, the CPU decodes the same bytes.
        for (c, h) in cpu.iter().zip(&hw) {
            assert_eq!(c.data, h.data);
        }
    }
}
