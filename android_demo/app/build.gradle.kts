plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.mobilesr.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.mobilesr.demo"
        minSdk = 28 // ImageDecoder
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    buildTypes {
        // `mobile-sr bench --runner app` reads results with `run-as`, which needs a debuggable build.
        getByName("debug") { isDebuggable = true }
        getByName("release") { isMinifyEnabled = false }
    }

    // Models are memory-mapped by LiteRT: keep them uncompressed in the APK.
    androidResources { noCompress += listOf("tflite", "pte") }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("com.google.ai.edge.litert:litert:1.0.1")
    implementation("com.google.ai.edge.litert:litert-gpu:1.0.1")
    // litert-gpu 1.0.1's POM does not pull in its API classes: without this, new GpuDelegate() throws
    // NoClassDefFoundError (GpuDelegateFactory$Options) the moment "GPU delegate" is ticked.
    implementation("com.google.ai.edge.litert:litert-gpu-api:1.0.1")
    implementation("org.pytorch:executorch-android:0.6.0")
}
