//! Embeddings: a deterministic feature-hashing embedder behind the [`Embedder`] trait. Words
//! (lowercase alphanumeric runs) and word pairs are hashed with FNV-1a 64 under a fixed seed
//! into [`EMBEDDING_DIMS`] signed buckets, then L2-normalised. Same text, same vector, on any
//! machine and in any replay; a model-backed embedder can implement the trait later.

/// Dimensions of the feature-hashing embedder.
pub const EMBEDDING_DIMS: usize = 512;
/// The fixed seed mixed into every feature hash (changing it changes every vector).
pub const EMBEDDING_SEED: u64 = 0x5eed_c0de_2026_0001;

/// Text to a unit vector.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// A stable name recorded with what it produced (`name/dims`).
    fn id(&self) -> String;
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// The deterministic embedder.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureHashEmbedder;

fn fnv1a(seed: u64, parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Lowercase alphanumeric words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Embedder for FeatureHashEmbedder {
    fn id(&self) -> String {
        format!("feature-hash-fnv1a/{EMBEDDING_DIMS}")
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; EMBEDDING_DIMS];
        let words = words(text);
        let mut add = |h: u64, weight: f32| {
            let i = (h % EMBEDDING_DIMS as u64) as usize;
            v[i] += if h >> 63 == 1 { -weight } else { weight };
        };
        for (i, w) in words.iter().enumerate() {
            add(fnv1a(EMBEDDING_SEED, &[w]), 1.0);
            if let Some(next) = words.get(i + 1) {
                add(fnv1a(EMBEDDING_SEED, &[w, next]), 0.5);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

/// Cosine similarity of two unit vectors (eight independent partial sums, so the compiler
/// can use vector instructions; the summation order is fixed, so results are reproducible).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_normalised_and_discriminating() {
        let e = FeatureHashEmbedder;
        let a = e.embed("The quarterly revenue grew by ten percent");
        assert_eq!(a, e.embed("The quarterly revenue grew by ten percent"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let near = cosine(&a, &e.embed("quarterly revenue grew"));
        let far = cosine(&a, &e.embed("penguins live in antarctica"));
        assert!(near > far + 0.3, "near {near} far {far}");
        assert!(e.embed("").iter().all(|x| *x == 0.0));
        // Pinned: a change of hash, seed or weighting shows up here.
        let pinned = e.embed("symphainy");
        let nonzero: Vec<usize> = pinned
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(nonzero.len(), 1);
        assert_eq!(
            nonzero[0],
            (fnv1a(EMBEDDING_SEED, &["symphainy"]) % EMBEDDING_DIMS as u64) as usize
        );
    }
}
