//! The field's frame rule: which frames of a clip a model sees, by the rule the field's published loaders use (TSN
//! segments, as in DFER-CLIP's and Former-DFER's `_get_test_indices` / `_get_train_indices`,
//! one frame per segment), and which frames a shard stores so that both views can be taken
//! from it. Frames are numbered 0.. in presentation order (a video's decoded frames, a frame
//! folder's files in numeric order).

use std::ops::Range;

/// The test view's frames of a clip of `n` frames, `t` segments: when `n > t`,
/// `int(tick/2 + tick·i)` with `tick = n/t` (each segment's centre); otherwise every frame,
/// padded with the last (`0, 1, …, n-1, n-1, …`).
pub fn test_indices(n: usize, t: usize) -> Vec<usize> {
    if n > t {
        let tick = n as f64 / t as f64;
        (0..t).map(|i| ((tick / 2.0 + tick * i as f64) as usize).min(n - 1)).collect()
    } else {
        (0..t).map(|i| i.min(n.saturating_sub(1))).collect()
    }
}

/// The frames the training view draws from, one range per segment: when `n ≥ t`, segment `i`
/// is `[i·avg, (i+1)·avg)` with `avg = n / t` (the last `n mod t` frames are never drawn, as
/// in the published loaders); otherwise frame `min(i, n-1)` alone (the padded short clip).
pub fn train_segments(n: usize, t: usize) -> Vec<Range<usize>> {
    let avg = n / t;
    if avg > 0 {
        (0..t).map(|i| i * avg..(i + 1) * avg).collect()
    } else {
        (0..t)
            .map(|i| {
                let f = i.min(n.saturating_sub(1));
                f..f + 1
            })
            .collect()
    }
}

/// The frames a clip of `n` frames stores (sorted, distinct) with a budget of `budget` frames
/// and `t` segments: every frame when `n ≤ budget`, so both views are exact; otherwise the test
/// frames and, in each training segment, `k = max(1, (budget − t) / t)` frames evenly spaced
/// (`start + floor((j + 0.5)·avg / k)`), among which training then draws.
pub fn stored_frames(n: usize, t: usize, budget: usize) -> Vec<usize> {
    if n <= budget {
        return (0..n).collect();
    }
    let k = (budget.saturating_sub(t) / t).max(1);
    let mut out = test_indices(n, t);
    for seg in train_segments(n, t) {
        let len = seg.len();
        out.extend((0..k.min(len)).map(|j| seg.start + ((j as f64 + 0.5) * len as f64 / k.min(len) as f64) as usize));
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DFER-CLIP's `_get_test_indices` with `num_segments = t`, `duration = 1`, written out.
    fn published_test(n: usize, t: usize) -> Vec<usize> {
        if n > t {
            let tick = n as f64 / t as f64;
            (0..t).map(|x| (tick / 2.0 + tick * x as f64) as usize).collect()
        } else {
            let mut v: Vec<usize> = (0..n).collect();
            v.resize(t, n - 1);
            v
        }
    }

    #[test]
    fn test_indices_equal_the_published_rule_for_every_length() {
        for t in [8, 16] {
            for n in 1..=300 {
                assert_eq!(test_indices(n, t), published_test(n, t), "n={n} t={t}");
            }
        }
        assert_eq!(test_indices(20, 16), vec![0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]);
        assert_eq!(test_indices(3, 6), vec![0, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn training_draws_cover_exactly_each_segment() {
        for n in 1..=300 {
            let segs = train_segments(n, 16);
            assert_eq!(segs.len(), 16);
            let avg = n / 16;
            for (i, s) in segs.iter().enumerate() {
                if avg > 0 {
                    // `i·avg + randint(avg)`: every frame of [i·avg, (i+1)·avg) and no other.
                    assert_eq!(*s, i * avg..(i + 1) * avg, "n={n} segment {i}");
                } else {
                    // The padded branch: frame i, or the last frame.
                    assert_eq!(*s, i.min(n - 1)..i.min(n - 1) + 1, "n={n} segment {i}");
                }
            }
        }
    }

    #[test]
    fn stored_frames_hold_both_views() {
        for n in 1..=300 {
            for budget in [16, 32, 64] {
                let stored = stored_frames(n, 16, budget);
                assert!(stored.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
                assert!(stored.len() <= budget.max(n.min(budget)) + 16, "n={n} budget {budget}: {}", stored.len());
                if n <= budget {
                    assert_eq!(stored, (0..n).collect::<Vec<_>>());
                }
                for f in test_indices(n, 16) {
                    assert!(stored.binary_search(&f).is_ok(), "n={n} budget {budget}: test frame {f} not stored");
                }
                for s in train_segments(n, 16) {
                    assert!(stored.iter().any(|f| s.contains(f)), "n={n} budget {budget}: nothing stored in {s:?}");
                }
            }
        }
        // 100 frames, budget 64: 16 test frames and 3 of each 6-frame segment.
        let s = stored_frames(100, 16, 64);
        assert!(s.len() <= 64, "{}", s.len());
        assert!([1, 3, 5].iter().all(|f| s.contains(f)), "{s:?}");
    }
}
