//! `selfsup methods | backbones | datasets`: what is available, one line each.

use anyhow::Result;
use selfsup::nn::BackboneKind;

/// Lists the methods, with their papers.
pub fn methods() -> Result<()> {
    for m in selfsup::methods::METHODS {
        println!("{:<10} {}\n{:<10} ({})", m.name, m.summary, "", m.paper);
    }
    Ok(())
}

/// Lists the shipped recipes.
pub fn recipes() -> Result<()> {
    for r in selfsup::recipes::RECIPES {
        println!("{:<20} {}", r.name, selfsup::recipes::summary(r));
    }
    Ok(())
}

/// Lists the backbones.
pub fn backbones() -> Result<()> {
    for (_, name, about) in BackboneKind::ALL {
        println!("{name:<10} {about}");
    }
    Ok(())
}

/// Lists the data formats.
pub fn datasets() -> Result<()> {
    println!(
        "embedded        Fashion-MNIST subset in the binary: 10,000 train + 10,000 test, 28x28 grey (MIT)"
    );
    println!(
        "idx:DIR         MNIST-style IDX files (train-images-idx3-ubyte[.gz], t10k-*), gzipped or not"
    );
    println!("cifar10:DIR     CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin)");
    println!("cifar100:DIR    CIFAR-100 binary files (train.bin, test.bin), fine labels");
    println!(
        "folder:DIR      images (PNG/JPEG) in class sub-folders, or unlabeled; train/ + test/ split if present"
    );
    println!(
        "video:PATH      a video file (read by ffmpeg), a folder of frame images, or a folder of both; one clip held out"
    );
    println!(
        "av:PATH         images with the sound of the same name beside them (NAME.png + NAME.ogg/.wav/.mp3), in category sub-folders; or video files with sound (each frame with the second around it)"
    );
    Ok(())
}
