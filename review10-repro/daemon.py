import ctypes, os, sys, time
l = ctypes.CDLL(None, use_errno=True); l.shmat.restype = ctypes.c_void_p
shmid = int(sys.argv[1])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        a = l.shmat(shmid, None, 0)
        open(sys.argv[2], "w").write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
os.wait()
print("parent done")
