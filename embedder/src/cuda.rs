//! Whether CUDA can run here, and if not, why, in words an operator can act
//! on: "not available" alone does not say whether the image, the driver or
//! the pod's GPU request is what is missing.

use std::ffi::{CStr, CString};

/// The one library the CUDA image adds to the CPU image's libtorch.
const BACKEND: &str = "libtorch_cuda.so";
/// The NVIDIA driver's user-space library: the host's, mounted into the
/// container by the NVIDIA container runtime, never part of an image.
const DRIVER: &str = "libcuda.so.1";

/// Opens `name` for the life of the process; the loader's message if it
/// cannot.
fn open(name: &str, flags: i32) -> Result<(), String> {
    let c_name = CString::new(name).expect("a library name has no NUL");
    // SAFETY: dlopen and dlerror with NUL-terminated strings; the handle is
    // never closed (a backend must stay loaded), and dlerror's message is
    // copied out at once, before any other dl call on this thread.
    #[allow(unsafe_code)]
    unsafe {
        if !libc::dlopen(c_name.as_ptr(), flags).is_null() {
            return Ok(());
        }
        let message = libc::dlerror();
        Err(if message.is_null() {
            format!("{name} could not be loaded")
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        })
    }
}

/// Loads libtorch's CUDA backend, if this libtorch has one. Rust links with
/// `--as-needed`, and nothing references `libtorch_cuda.so` by symbol, so the
/// linker drops it and CUDA looks absent; opening it registers the backend.
fn load_backend() -> Result<(), String> {
    open(BACKEND, libc::RTLD_NOW | libc::RTLD_GLOBAL)
}

/// The number of CUDA devices, or why there are none.
pub fn probe() -> Result<usize, String> {
    if let Err(e) = load_backend() {
        return Err(format!(
            "this libtorch has no CUDA backend ({e}): the CPU image and a CPU-only \
             libtorch cannot use a GPU; run the CUDA image"
        ));
    }
    if tch::Cuda::is_available() {
        return Ok(tch::Cuda::device_count().max(0) as usize);
    }
    if let Err(e) = open(DRIVER, libc::RTLD_LAZY | libc::RTLD_LOCAL) {
        return Err(format!(
            "no NVIDIA driver: {DRIVER} cannot be loaded ({e}); the node needs the \
             NVIDIA driver and the container the NVIDIA container runtime (Kubernetes: \
             a nvidia.com/gpu limit; podman: --device nvidia.com/gpu=all)"
        ));
    }
    Err(format!(
        "the NVIDIA driver ({DRIVER}) is there but shows no CUDA device: see \
         nvidia-smi, and NVIDIA_VISIBLE_DEVICES or the pod's nvidia.com/gpu limit"
    ))
}
