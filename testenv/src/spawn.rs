//! Child processes that cannot outlive the process that started them.
//!
//! Every child gets `prctl(PR_SET_PDEATHSIG, SIGKILL)`. The kernel sends that signal when the
//! *thread* that forked the child exits, not the process, so all children are forked from one
//! dedicated thread that lives as long as the process does. Test threads (which libtest ends
//! after each test) and tokio worker threads never fork a process themselves.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

type Job = (Command, mpsc::SyncSender<io::Result<Child>>);

/// The spawner thread's inbox. The thread never exits: it blocks on `recv` forever.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the testenv spawner thread");
        tx
    })
}

/// Spawns `cmd` so that the kernel kills it (SIGKILL) as soon as this process ends, however it
/// ends (normal exit, panic, SIGKILL).
pub fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (prctl, getppid, and building an io::Error from errno).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will signal us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::sync_channel(1);
    spawner()
        .send((cmd, tx))
        .map_err(|_| io::Error::other("testenv spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("testenv spawner thread dropped the request"))?
}
