//! Child processes owned by the test process: their own process group, and
//! killed with the test process however it ends.

use std::{
    process::{Child, Command},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

/// Sends `sig` to a process (positive) or a process group (negative).
pub fn signal(pid_or_group: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid_or_group, sig);
    }
}

/// Spawns `cmd` in its own process group, from a thread that lives as long as
/// the test process, with PR_SET_PDEATHSIG so the child is killed when this
/// process ends, however it ends. (The death signal fires when the spawning
/// *thread* exits, and test threads end with each test.)
pub fn spawn_owned(mut cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("process-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static, so this thread never ends.
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .expect("spawner lock")
        .send((cmd, tx))
        .expect("spawner alive");
    rx.recv().expect("spawner reply")
}

/// SIGTERM to the child's group, then SIGKILL after `grace`; reaps it.
/// Returns whether it exited within the grace period.
pub fn stop_group(mut child: Child, grace: Duration) -> bool {
    let group = -(child.id() as i32);
    signal(group, libc::SIGTERM);
    let exited = wait_for_exit(&mut child, grace);
    signal(group, libc::SIGKILL);
    let _ = child.wait();
    exited
}

/// Polls until `child` exits or `timeout` passes.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
