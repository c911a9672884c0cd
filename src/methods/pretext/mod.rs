//! Pretext tasks that make their own labels: which rotation was applied, how tiles were
//! shuffled, where a patch sits, the colours of a grey image, the missing centre. Each task's
//! file holds its settings, head and loss; [`multi_task`] holds the model and method they
//! share (one backbone, a head per task), alone or several at once.

pub mod colorization;
pub mod inpainting;
pub mod jigsaw;
pub mod multi_task;
pub mod relative_position;
pub mod rotation;
