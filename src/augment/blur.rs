//! Gaussian blur, separable, with reflected borders; kernel radius `ceil(3 sigma)`.

use super::Image;

/// The normalized 1-D Gaussian kernel for `sigma`.
pub fn kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

fn reflect(i: isize, n: isize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Blurs every channel of `img` with a Gaussian of standard deviation `sigma` pixels.
pub fn gaussian_blur(img: &mut Image, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let k = kernel(sigma);
    let r = (k.len() / 2) as isize;
    let (h, w) = (img.height, img.width);
    let mut tmp = vec![0.0f32; h * w];
    for c in 0..img.channels {
        let plane = &mut img.data[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    s += kv * plane[y * w + reflect(x as isize + j as isize - r, w as isize)];
                }
                tmp[y * w + x] = s;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    s += kv * tmp[reflect(y as isize + j as isize - r, h as isize) * w + x];
                }
                plane[y * w + x] = s;
            }
        }
    }
}
