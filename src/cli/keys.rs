//! `siege run --interactive`: the instructor's keys on a terminal. The terminal is put in cbreak
//! mode (keys arrive one by one, without echo; Ctrl-C still interrupts) for as long as the
//! [`Keys`] live, and restored when they are dropped, on every path out of the run.
//!
//! | key | does |
//! |---|---|
//! | `1`–`9` | inject fault N of the scenario's manual catalog |
//! | `s` | spike the traffic |
//! | `d` / `m` | mark detected / mitigated |
//! | `n` | type a note, Enter adds it, Esc drops it |
//! | `q` | stop the run (every fault is reverted) |

use std::io::Read;
use std::os::fd::AsRawFd;

use tokio::sync::mpsc;

/// What a key press asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Manual fault number N (1-based, as `siege plan` lists them).
    Inject(usize),
    Spike,
    Detected,
    Mitigated,
    /// A note being typed: the text so far (to show it on the status line).
    Typing(String),
    Note(String),
    /// The note being typed was dropped.
    NoteDropped,
    Stop,
}

/// The legend the status line shows.
pub(super) const LEGEND: &str = "keys: 1-9 inject · s spike · d detected · m mitigated · n note · q stop";

/// Turns key bytes into actions; holds the note being typed.
#[derive(Debug, Default)]
pub(super) struct KeyMap {
    /// The note being typed, as bytes (a character may take several).
    note: Option<Vec<u8>>,
}

impl KeyMap {
    /// The action of one byte of input, if it makes one.
    pub(super) fn feed(&mut self, b: u8) -> Option<Action> {
        if let Some(note) = &mut self.note {
            return match b {
                b'\r' | b'\n' => {
                    let text = String::from_utf8_lossy(&self.note.take().unwrap_or_default()).trim().to_string();
                    Some(if text.is_empty() { Action::NoteDropped } else { Action::Note(text) })
                }
                0x1b => {
                    self.note = None;
                    Some(Action::NoteDropped)
                }
                0x7f | 0x08 => {
                    // A whole character: continuation bytes of UTF-8 are 0b10xxxxxx.
                    while let Some(last) = note.pop() {
                        if last & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    Some(Action::Typing(String::from_utf8_lossy(note).into_owned()))
                }
                b if b >= 0x20 => {
                    note.push(b);
                    Some(Action::Typing(String::from_utf8_lossy(note).into_owned()))
                }
                _ => None,
            };
        }
        match b {
            b'1'..=b'9' => Some(Action::Inject(usize::from(b - b'0'))),
            b's' | b'S' => Some(Action::Spike),
            b'd' | b'D' => Some(Action::Detected),
            b'm' | b'M' => Some(Action::Mitigated),
            b'n' | b'N' => {
                self.note = Some(Vec::new());
                Some(Action::Typing(String::new()))
            }
            b'q' | b'Q' => Some(Action::Stop),
            _ => None,
        }
    }
}

/// The terminal in cbreak mode until dropped.
pub(super) struct Keys {
    saved: libc::termios,
    fd: i32,
}

impl Keys {
    /// Puts the terminal on stdin in cbreak mode and reads its keys on a thread of their own.
    /// Fails when stdin is not a terminal. The actions arrive on the receiver.
    pub(super) fn start() -> std::io::Result<(Keys, mpsc::UnboundedReceiver<Action>)> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr / tcsetattr on a descriptor this process owns, with a zeroed
        // termios that tcgetattr fills before it is read.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut raw = t;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            t
        };
        let (tx, actions) = mpsc::unbounded_channel();
        // A blocking read: the thread ends with the process (or at the end of input).
        std::thread::Builder::new().name("siege-keys".into()).spawn(move || {
            let mut map = KeyMap::default();
            let mut stdin = std::io::stdin().lock();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdin.read(&mut byte) {
                if let Some(a) = map.feed(byte[0])
                    && tx.send(a).is_err()
                {
                    return;
                }
            }
        })?;
        Ok((Keys { saved, fd }, actions))
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `start` on the same descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(keys: &str) -> Vec<Action> {
        let mut m = KeyMap::default();
        keys.bytes().filter_map(|b| m.feed(b)).collect()
    }

    #[test]
    fn keys_make_actions() {
        assert_eq!(
            feed("1d9mxsq"),
            vec![
                Action::Inject(1),
                Action::Detected,
                Action::Inject(9),
                Action::Mitigated,
                Action::Spike,
                Action::Stop
            ]
        );
    }

    #[test]
    fn a_note_is_typed_edited_and_added_or_dropped() {
        let a = feed("nab\x7fc\r");
        assert_eq!(a.last(), Some(&Action::Note("ac".into())));
        assert_eq!(
            a[..4],
            [
                Action::Typing("".into()),
                Action::Typing("a".into()),
                Action::Typing("ab".into()),
                Action::Typing("a".into())
            ]
        );
        // While typing, keys are text: `q` does not stop the run.
        assert_eq!(feed("nq\r").last(), Some(&Action::Note("q".into())));
        assert_eq!(feed("nzz\x1bq").last(), Some(&Action::Stop));
        assert_eq!(feed("né\x7fe\r").last(), Some(&Action::Note("e".into())));
        assert_eq!(
            feed("n  \r"),
            vec![
                Action::Typing("".into()),
                Action::Typing(" ".into()),
                Action::Typing("  ".into()),
                Action::NoteDropped
            ]
        );
    }
}
