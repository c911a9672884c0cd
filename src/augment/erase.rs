//! Random erasing (Zhong et al. 2020, "Random Erasing Data Augmentation"; torchvision's
//! `RandomErasing`): one rectangle of random area and aspect ratio is set to a constant. On
//! normalized views a value of 0 is the dataset's mean grey, as torchvision's default.

use super::Image;
use rand::Rng;

/// Erases one rectangle whose area fraction is drawn from `scale` and whose aspect ratio is
/// log-uniform in `ratio`, with ten tries as torchvision; leaves the image as it is when no
/// rectangle fits.
pub fn random<R: Rng>(
    img: &mut Image,
    scale: (f32, f32),
    ratio: (f32, f32),
    value: f32,
    rng: &mut R,
) {
    let (h, w) = (img.height, img.width);
    let area = (h * w) as f32;
    for _ in 0..10 {
        let (eh, ew) = super::crop::draw_sides(area, scale, ratio, rng);
        let (eh, ew) = (eh as usize, ew as usize);
        if eh == 0 || ew == 0 || eh >= h || ew >= w {
            continue;
        }
        let top = rng.random_range(0..=h - eh);
        let left = rng.random_range(0..=w - ew);
        fill(img, top, left, eh, ew, value);
        return;
    }
}

/// Sets the rectangle at `top`, `left` of `height` x `width` to `value` in every channel.
pub fn fill(img: &mut Image, top: usize, left: usize, height: usize, width: usize, value: f32) {
    let plane = img.height * img.width;
    for c in 0..img.channels {
        for y in top..top + height {
            let row = c * plane + y * img.width;
            img.data[row + left..row + left + width].fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn erases_one_rectangle_within_the_area_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let mut img = Image {
                data: vec![1.0; 2 * 28 * 28],
                channels: 2,
                height: 28,
                width: 28,
            };
            random(&mut img, (0.02, 0.2), (0.3, 3.3), 0.0, &mut rng);
            let erased = img.data[..784].iter().filter(|&&v| v == 0.0).count();
            assert_eq!(
                erased,
                img.data[784..].iter().filter(|&&v| v == 0.0).count()
            );
            // Rounding the sides moves the area a little off the drawn fraction.
            assert!(erased == 0 || (8..=200).contains(&erased), "{erased}");
            // The erased pixels form a rectangle: rows hold the same count, contiguous.
            let rows: Vec<usize> = (0..28)
                .map(|y| {
                    img.data[y * 28..(y + 1) * 28]
                        .iter()
                        .filter(|&&v| v == 0.0)
                        .count()
                })
                .filter(|&n| n > 0)
                .collect();
            assert!(rows.windows(2).all(|p| p[0] == p[1]));
        }
    }
}
