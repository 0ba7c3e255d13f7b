//! ffprobe's JSON as the media pipeline reads it. A hostile file controls much of what
//! ffprobe prints; parsing never panics, and an accepted probe is one a decode can use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = media::parse_probe_output(data, data.len() as u64 + 1) {
        assert!(p.duration_s.is_finite() && p.duration_s > 0.0, "{p:?}");
        assert!([0, 90, 180, 270].contains(&p.rotation), "{p:?}");
        if p.has_video {
            assert!(p.width > 0 && p.height > 0, "{p:?}");
            assert!(p.fps.is_finite() && p.fps > 0.0, "{p:?}");
        }
    }
});
