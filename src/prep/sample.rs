//! Frame sampling: `t` frames at segment centres (the DFER-CLIP test-time rule), by frame
//! number for frame folders and by presentation time for videos, so variable frame rate is
//! safe. Clips shorter than `t` repeat their last frame.

/// Segment-centre frame numbers for a clip of `n` frames: `floor((i + 0.5) · n / t)`, or
/// `0, 1, …, n-1, n-1, …` when `n < t`.
pub fn by_index(n: usize, t: usize) -> Vec<usize> {
    if n < t {
        return (0..t).map(|i| i.min(n - 1)).collect();
    }
    (0..t).map(|i| (((i as f64 + 0.5) * n as f64 / t as f64).floor() as usize).min(n - 1)).collect()
}

/// Segment centres by time: the clip spans from its first frame's time to its last frame's
/// time plus one typical frame duration; sample `i` is the frame shown at the centre of
/// segment `i`. `times` are sorted presentation times.
pub fn by_time(times: &[f64], t: usize) -> Vec<usize> {
    let n = times.len();
    if n < t {
        return by_index(n, t);
    }
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).filter(|g| *g > 0.0).collect();
    gaps.sort_by(f64::total_cmp);
    let frame_dur = gaps.get(gaps.len() / 2).copied().unwrap_or(1.0);
    let (start, end) = (times[0], times[n - 1] + frame_dur);
    (0..t)
        .map(|i| {
            let target = start + (i as f64 + 0.5) * (end - start) / t as f64;
            // The frame on screen at `target`: the last one starting at or before it (with a
            // tolerance for rounded timestamps).
            times.partition_point(|&x| x <= target + 1e-9).saturating_sub(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rule_matches_the_tsn_test_formula() {
        // tick = n / t, offset_i = int(tick/2 + tick*i)
        for (n, t) in [(16, 16), (40, 16), (97, 16), (300, 8)] {
            let tick = n as f64 / t as f64;
            let want: Vec<usize> = (0..t).map(|i| (tick / 2.0 + tick * i as f64) as usize).collect();
            assert_eq!(by_index(n, t), want, "n={n}");
        }
    }

    #[test]
    fn short_clips_repeat_the_last_frame() {
        assert_eq!(by_index(3, 6), vec![0, 1, 2, 2, 2, 2]);
        assert_eq!(by_index(1, 4), vec![0, 0, 0, 0]);
        assert_eq!(by_time(&[0.0, 0.04], 4), vec![0, 1, 1, 1]);
    }

    #[test]
    fn constant_rate_time_sampling_equals_index_sampling() {
        for n in [16, 25, 61, 120] {
            let times: Vec<f64> = (0..n).map(|i| i as f64 / 25.0).collect();
            assert_eq!(by_time(&times, 16), by_index(n, 16), "n={n}");
        }
    }

    #[test]
    fn variable_rate_samples_by_time_not_by_count() {
        // 20 frames at 25 fps, then 20 frames at 12.5 fps: the second half lasts twice as long.
        let mut times: Vec<f64> = (0..20).map(|i| i as f64 * 0.04).collect();
        times.extend((0..20).map(|i| 0.8 + i as f64 * 0.08));
        let idx = by_time(&times, 4);
        // Span 0..2.4 s (+0.04); centres at ≈0.3, 0.9, 1.5, 2.1 s.
        assert_eq!(idx, vec![7, 21, 28, 35]);
        assert_ne!(idx, by_index(40, 4));
    }
}
