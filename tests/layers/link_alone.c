/* Links one library whole (every object in it, -Wl,--whole-archive) with only the libraries its
 * CMake target names: the build fails with "undefined reference" when a library uses a function of
 * a floor above it, or of one it does not declare. Running it does nothing. */
int main(void)
{
    return 0;
}
