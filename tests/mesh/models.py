"""Small sklearn models for the mesh's tests and bench: model k answers class k % 3 for any input, so an answer
says which model served it."""

from pathlib import Path

IRIS_SAMPLE = [5.1, 3.5, 1.4, 0.2]


def constant_models(target: Path, count: int) -> list[Path]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.dummy import DummyClassifier

    features, labels = load_iris(return_X_y=True)
    paths = []
    for index in range(count):
        directory = target / f"model{index}"
        directory.mkdir(parents=True, exist_ok=True)
        model = DummyClassifier(strategy="constant", constant=index % 3).fit(features, labels)
        joblib.dump(model, directory / "model.joblib")
        paths.append(directory)
    return paths
